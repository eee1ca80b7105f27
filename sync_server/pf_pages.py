"""The channel -> provincial pf table: a page and an API (sync_server/pf_map.py).

- ``GET /pf-map``: the table in force and how a pf received from the province
  is read; admins also get the form that changes it (``POST /pf-map``).
- ``GET /api/v1/pf-map``: the same as JSON, for any logged-in user.
- ``PUT /api/v1/pf-map``: admins replace the table with
  ``{"rows": [{"channel": ..., "client": ..., "pf": ...}, ...]}``.

The PUT takes only a JSON body, which no page of another site can send without
a CORS preflight this app never grants (and the session cookie is SameSite),
so it needs no CSRF token; the form carries one like every other form.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from protocols.levels import CHANNELS, CLIENTS, PF_CODES, MappingError
from protocols.record import WEB_CHANNELS
from sync_server import csrf, pf_map
from sync_server.auth import admin_required, requires
from sync_server.db import get_engine
from sync_server.web import CHANNEL_LABELS

bp = Blueprint("pf_map", __name__)

# English message ids; the zh_CN catalog gives protocols.levels.PF_NAMES (a test checks)
PF_LABELS = {
    1: _l("PC"),
    2: _l("Mobile"),
    3: _l("QR code"),
    4: _l("Hall tablet"),
    5: _l("Other hall terminal"),
    6: _l("Telephone"),
    7: _l("SMS"),
}
CLIENT_LABELS = {"": _l("Any client"), "pc": _l("PC"), "mobile": _l("Mobile")}

# the form's cells: every channel for any client, web channels per client too
FORM_CELLS = tuple(
    (channel, client)
    for channel in CHANNELS
    for client in ("", *(CLIENTS if channel in WEB_CHANNELS else ()))
)


def _field(channel: str, client: str) -> str:
    return f"pf-{channel}-{client}"


def _form_value(text: str):
    """A select's value: "" is not configured, a known code its number, else
    the text itself (pf_map.check refuses it with the row's number)."""
    text = text.strip()
    if not text:
        return None
    return int(text) if text in {str(code) for code in PF_CODES} else text


def _inverse(table) -> list[dict]:
    inverse = []
    for pf in PF_CODES:
        try:
            channel, client = pf_map.from_pf(table, pf)
        except MappingError:
            channel, client = None, None
        inverse.append({"pf": pf, "channel": channel, "client": client})
    return inverse


def _page(error=None, status=200):
    engine = get_engine()
    table = pf_map.read(engine)
    current = {(row.channel, row.client): row.pf for row in table}
    return render_template(
        "pf_map.html",
        rows=pf_map.details(engine),
        inverse=_inverse(table),
        cells=[(channel, client, _field(channel, client)) for channel, client in FORM_CELLS],
        current=current,
        PF_CODES=PF_CODES,
        PF_LABELS=PF_LABELS,
        CLIENT_LABELS=CLIENT_LABELS,
        CHANNEL_LABELS=CHANNEL_LABELS,
        error=error,
        saved=request.args.get("saved") == "1",
    ), status


@bp.get("/pf-map")
@requires("pf_read")
def page():
    return _page()


@bp.post("/pf-map")
@admin_required
def change():
    rows = [
        (channel, client, _form_value(request.form.get(field, "")))
        for channel, client in FORM_CELLS
        for field in [_field(channel, client)]
    ]
    try:
        pf_map.save(get_engine(), rows, current_user.username)
    except pf_map.PfMapError as exc:
        return _page(error=str(exc), status=400)
    return redirect(url_for("pf_map.page", saved=1))


def _api_answer():
    engine = get_engine()
    return {"items": pf_map.details(engine), "inverse": _inverse(pf_map.read(engine))}


@bp.get("/api/v1/pf-map")
@requires("pf_read")
def api_read():
    return jsonify(_api_answer())


@bp.put("/api/v1/pf-map")
@csrf.exempt
@admin_required
def api_change():
    if not request.is_json:
        return jsonify(error="body: must be JSON (Content-Type: application/json)"), 415
    body = request.get_json(silent=True)
    rows = body.get("rows") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        return jsonify(error='body: must be {"rows": [{"channel", "client", "pf"}, ...]}'), 400
    try:
        pf_map.save(get_engine(), [_api_row(row) for row in rows], current_user.username)
    except pf_map.PfMapError as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(_api_answer())


def _api_row(row):
    if isinstance(row, dict) and set(row) == {"channel", "client", "pf"}:
        return (row["channel"], row["client"], row["pf"])
    return None  # pf_map.check names the row: "must have a channel, a client and a pf"
