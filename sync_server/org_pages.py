"""The organisation's pages: browse the tree; add, rename, move and retire
units, windows, staff and service items; import and export files.

- ``GET /org``: the tree (a unit manager or clerk sees their own subtree).
- ``GET /org/units/<id>``: a unit, what is in it, and the forms that change it.
- ``GET /org/<what>/<code>``: a window, staff member or item with its history.
- ``POST /org/add|rename|move|retire``: the changes, each audited.
- ``GET /org/export?what=units&format=xlsx|csv``, ``POST /org/import`` (admins).
- ``GET /api/v1/org/units``: the units in the caller's scope as JSON.

Unit managers change only what is inside their subtree (never their own root
unit, which the admin placed) and move things only to units inside it.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from sync_server import audit, org
from sync_server.auth import requires
from sync_server.db import get_engine

bp = Blueprint("org_pages", __name__)

KIND_LABELS = {
    "district": _l("District"),
    "street": _l("Street"),
    "town": _l("Town"),
    "village": _l("Village"),
    "community": _l("Community"),
    "department": _l("District department"),
    "hall": _l("Service hall"),
    "service_point": _l("Service point"),
}
WHAT_LABELS = {
    "units": _l("Units"),
    "windows": _l("Windows"),
    "staff": _l("Staff"),
    "items": _l("Service items"),
}
FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def init_app(app) -> None:
    @app.context_processor
    def _labels():
        return {"KIND_LABELS": KIND_LABELS, "WHAT_LABELS": WHAT_LABELS}


def _scope():
    return current_user.scope()


def _visible(unit_id) -> bool:
    return current_user.sees_unit(unit_id)


def _may_change(unit_id, is_root_unit: bool = False) -> bool:
    """May the user change what sits in `unit_id` (or the unit itself)?"""
    if not current_user.can("org_write"):
        return False
    if current_user.scope() is None:
        return True
    if is_root_unit and unit_id == current_user.unit_id:
        return False  # their own unit is placed by the admin
    return current_user.sees_unit(unit_id)


def _units_in_scope(conn):
    scope = _scope()
    return [u for u in org.units(conn) if scope is None or u["id"] in scope]


@bp.get("/org")
@requires("org_read")
def tree():
    with get_engine().connect() as conn:
        roots = org.tree(conn, current_user.unit_id if _scope() is not None else None)
        counts = {what: _count_by_unit(org.members(conn, what, _scope())) for what in org.WHATS[1:]}
    return render_template("org.html", roots=roots, counts=counts, error=None)


def _count_by_unit(rows):
    counts = {}
    for row in rows:
        counts[row["unit"]] = counts.get(row["unit"], 0) + 1
    return counts


def _unit_page(unit_id, error=None, status=200):
    with get_engine().connect() as conn:
        unit = org.get(conn, "units", unit_id)
        if unit is None or not _visible(unit_id):
            abort(404)
        children = [u for u in org.units(conn) if u["parent"] == unit_id]
        members = {what: org.members(conn, what, {unit_id}) for what in org.WHATS[1:]}
        history = org.history(conn, "units", unit_id)
        targets = _units_in_scope(conn)
    return render_template(
        "org_unit.html",
        unit=unit,
        children=children,
        members=members,
        history=history,
        targets=targets,
        may_change=_may_change(unit_id),
        may_change_unit=_may_change(unit_id, is_root_unit=True),
        error=error,
    ), status


@bp.get("/org/units/<unit_id>")
@requires("org_read")
def unit(unit_id):
    return _unit_page(unit_id)


@bp.get("/org/<what>/<code>")
@requires("org_read")
def member(what, code):
    if what not in org.WHATS[1:]:
        abort(404)
    return _member_page(what, code)


def _member_page(what, code, error=None, status=200):
    with get_engine().connect() as conn:
        item = org.get(conn, what, code)
        if item is None or not _visible(item["unit"]):
            abort(404)
        history = org.history(conn, what, code)
        targets = _units_in_scope(conn)
    return render_template(
        "org_member.html",
        what=what,
        item=item,
        history=history,
        targets=targets,
        may_change=_may_change(item["unit"]) and not item["retired_at"],
        error=error,
        has_photo=what == "staff" and _has_photo(code),
    ), status


def _has_photo(code) -> bool:
    with get_engine().connect() as conn:
        return org.photo(conn, code) is not None


def _back(what, code, held):
    if what == "units":
        return redirect(url_for("org_pages.unit", unit_id=code, **_held_args(held)))
    return redirect(url_for("org_pages.member", what=what, code=code, **_held_args(held)))


def _form_what():
    what = request.form.get("what", "")
    if what not in org.WHATS:
        abort(400)
    return what


def _fail(what, code, unit_id, message):
    if what != "units" and code:
        with get_engine().connect() as conn:
            if org.get(conn, what, code) is not None:
                return _member_page(what, code, error=message, status=400)
    return _unit_page(unit_id, error=message, status=400)


@bp.post("/org/add")
@requires("org_write")
def add():
    what = _form_what()
    form = request.form
    code, unit_id = form.get("code", "").strip(), form.get("unit", "").strip() or None
    if unit_id is None or not _may_change(unit_id):
        abort(403)
    engine = get_engine()
    try:
        with engine.begin() as conn:
            held = org.add(conn, what, code, form.get("name", ""), unit_id, kind=form.get("kind"))
            audit.record(conn, f"org.{what}.add", f"{what}:{code}", None, org.get(conn, what, code))
    except org.OrgError as exc:
        return _unit_page(unit_id, error=str(exc), status=400)
    return redirect(url_for("org_pages.unit", unit_id=unit_id, **_held_args(held)))


def _held_args(held) -> dict:
    """The page after a staff change says how many keypads kept their old
    roster (sync_server/fleet.py follow_org); the fleet page says why."""
    return {"keypads_held": len(held)} if held else {}


def _existing(conn, what, code):
    item = org.get(conn, what, code)
    if item is None or not _visible(item["unit"] if what != "units" else code):
        abort(404)
    return item


def _change(action: str, change, target: str | None = None):
    """One change of an existing item from a form: found inside the user's
    units (else 404), allowed where it sits and, for a move, where it goes
    (else 403), made and audited in one transaction. Returns (what, code,
    the item before, the keypads whose roster could not follow) or a
    response: the page again with the error."""
    what, code = _form_what(), request.form.get("code", "")
    engine = get_engine()
    with engine.connect() as conn:
        before = _existing(conn, what, code)
    if not _may_change(code if what == "units" else before["unit"], is_root_unit=True):
        abort(403)
    if target is not None and not _may_change(target):
        abort(403)
    try:
        with engine.begin() as conn:
            held = change(conn, what, code)
            audit.record(
                conn, f"org.{what}.{action}", f"{what}:{code}", before, org.get(conn, what, code)
            )
    except org.OrgError as exc:
        return _fail(what, code, code if what == "units" else before["unit"], str(exc))
    return what, code, before, held


@bp.post("/org/rename")
@requires("org_write")
def rename():
    name, kind = request.form.get("name", ""), request.form.get("kind")
    done = _change("rename", lambda conn, what, code: org.rename(conn, what, code, name, kind))
    if not isinstance(done, tuple):
        return done
    what, code, before, held = done
    return _back(what, code, held)


@bp.post("/org/move")
@requires("org_write")
def move():
    target = request.form.get("unit", "").strip()
    done = _change("move", lambda conn, what, code: org.move(conn, what, code, target), target)
    if not isinstance(done, tuple):
        return done
    what, code, _before, held = done
    return _back(what, code, held)


@bp.post("/org/retire")
@requires("org_write")
def retire():
    done = _change("retire", org.retire)
    if not isinstance(done, tuple):
        return done
    _what, _code, before, held = done
    if before["unit"]:
        return redirect(url_for("org_pages.unit", unit_id=before["unit"], **_held_args(held)))
    return redirect(url_for("org_pages.tree", **_held_args(held)))


PHOTO_TYPES = {"image/jpeg", "image/png"}
MAX_PHOTO = 512 * 1024


@bp.post("/org/staff/<code>/photo")
@requires("org_write")
def upload_photo(code):
    engine = get_engine()
    with engine.connect() as conn:
        before = _existing(conn, "staff", code)
    if not _may_change(before["unit"]):
        abort(403)
    upload = request.files.get("photo")
    data = upload.read(MAX_PHOTO + 1) if upload else b""
    kind = (
        "image/png"
        if data.startswith(b"\x89PNG\r\n\x1a\n")
        else "image/jpeg"
        if data.startswith(b"\xff\xd8\xff")
        else None
    )
    if kind is None or len(data) > MAX_PHOTO:
        return _member_page("staff", code, _("photo: a JPEG or PNG image of at most 512 KB"), 400)
    with engine.begin() as conn:
        org.set_photo(conn, code, data, kind)
        audit.record(
            conn, "org.staff.photo", f"staff:{code}", None, {"bytes": len(data), "type": kind}
        )
    return redirect(url_for("org_pages.member", what="staff", code=code))


@bp.get("/org/staff/<code>/photo")
@requires("org_read")
def photo(code):
    with get_engine().connect() as conn:
        _existing(conn, "staff", code)
        found = org.photo(conn, code)
    if found is None:
        abort(404)
    return Response(found[0], mimetype=found[1], headers={"X-Content-Type-Options": "nosniff"})


@bp.get("/org/export")
@requires("org_read")
def export():
    what, fmt = request.args.get("what", "units"), request.args.get("format", "csv")
    if what not in org.WHATS or fmt not in FORMATS:
        abort(404)
    with get_engine().connect() as conn:
        rows = org.export_rows(conn, what, _scope())
    data = org.to_csv(rows) if fmt == "csv" else org.to_xlsx(rows, what)
    return Response(
        data,
        mimetype=FORMATS[fmt],
        headers={"Content-Disposition": f"attachment; filename=hcp-{what}.{fmt}"},
    )


@bp.post("/org/import")
@requires("org_files")
def import_file():
    what = _form_what()
    upload = request.files.get("file")
    engine = get_engine()
    try:
        if upload is None or not upload.filename:
            raise org.OrgError(_("file: choose a file"))
        rows = org.read_file(upload.read(), upload.filename)
        with engine.begin() as conn:
            counts = org.import_rows(conn, what, rows)
            audit.record(conn, f"org.{what}.import", upload.filename, None, counts)
    except org.OrgError as exc:
        with engine.connect() as conn:
            roots = org.tree(conn)
            counts_by = {w: _count_by_unit(org.members(conn, w)) for w in org.WHATS[1:]}
        return render_template("org.html", roots=roots, counts=counts_by, error=str(exc)), 400
    return redirect(url_for("org_pages.tree", imported=what, **counts))


@bp.get("/api/v1/org/units")
@requires("org_read")
def api_units():
    with get_engine().connect() as conn:
        return jsonify(items=_units_in_scope(conn))
