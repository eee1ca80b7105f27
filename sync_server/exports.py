"""Streamed exports: the evaluations and every figure as CSV and Excel.

Both formats are generators, so a million rows never sit in memory:

- CSV (UTF-8 with a byte-order mark, which Excel needs to read Chinese) is
  written a few hundred rows at a time as the database hands them over;
- Excel is written by openpyxl in write-only mode, which keeps each row only
  until it is written out to a temporary file; the finished workbook is then
  sent from that file in chunks, and the file is removed.

tests/test_exports.py measures the peak memory of both over 200,000 rows.

The layout is the one district offices use: a title, the period, the unit,
the time it was made, a header row, the rows, and a totals row. An export
never carries a rater's contact (it lives in its own table, which nothing
here reads) nor a signature.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import tempfile

from flask import Blueprint, Response, abort, render_template, request, stream_with_context
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import and_, select

from sync_server import api, db, figures, org, queries
from sync_server.auth import requires
from sync_server.db import get_engine
from sync_server.org_pages import FORMATS
from sync_server.web import LEVEL_LABELS

bp = Blueprint("exports", __name__)

CSV_ROWS_PER_CHUNK = 500
FILE_CHUNK = 256 * 1024
FETCH = 2_000


def csv_chunks(rows):
    """Rows (lists) -> CSV text in chunks, a byte-order mark first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    yield "\ufeff".encode()
    waiting = 0
    for row in rows:
        writer.writerow(["" if cell is None else cell for cell in row])
        waiting += 1
        if waiting >= CSV_ROWS_PER_CHUNK:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
            waiting = 0
    if waiting:
        yield buffer.getvalue().encode()


def xlsx_chunks(rows, sheet_title: str):
    """Rows (lists) -> an .xlsx file in chunks (openpyxl write-only mode)."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=sheet_title[:31])
    for row in rows:
        sheet.append(row)
    handle, path = tempfile.mkstemp(suffix=".xlsx", prefix="hcp-export-")
    os.close(handle)
    try:
        workbook.save(path)
        with open(path, "rb") as finished:
            while chunk := finished.read(FILE_CHUNK):
                yield chunk
    finally:
        os.unlink(path)


def response(rows, fmt: str, name: str, sheet_title: str) -> Response:
    """A download of `rows` streamed as CSV or Excel."""
    chunks = csv_chunks(rows) if fmt == "csv" else xlsx_chunks(rows, sheet_title)
    return Response(
        stream_with_context(chunks),
        mimetype=FORMATS[fmt],
        headers={"Content-Disposition": f"attachment; filename={name}.{fmt}"},
    )


# --- the evaluations ---------------------------------------------------------------------

COLUMNS = (
    ("id", _l("Record")),
    ("effective_at", _l("Time (UTC)")),
    ("stars", _l("Level")),
    ("channel", _l("Channel")),
    ("tags", _l("Content tags")),
    ("comment", _l("Comment")),
    ("case_no", _l("Case number")),
    ("service_no", _l("Service number")),
    ("item_code", _l("Service item")),
    ("window_id", _l("Window")),
    ("staff_id", _l("Staff")),
    ("unit", _l("Unit (at the time)")),
    ("origin", _l("Origin")),
    ("attempt", _l("Attempt")),
    ("excluded", _l("Voided")),
    ("repeat_of", _l("Repeat of")),
)
# what the rows need: the columns shown, and what resolves the unit
FIELDS = [name for name, _label in COLUMNS if name != "unit"] + ["org_id"]


def evaluation_rows(conn, filters: dict, title: str, unit_label: str):
    """The evaluations export as rows (a generator): the head, one row per
    rating (oldest first), and the totals by level. Units are resolved per
    chunk of ratings with one placements query (figures.Resolver)."""
    ev = db.evaluations.c
    period = f"{filters.get('since', '—')} — {filters.get('until', '—')}"
    yield [title]
    yield [_("Period (UTC)"), period]
    yield [_("Unit"), unit_label]
    yield [_("Made"), dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")]
    yield [str(label) for _name, label in COLUMNS]
    levels = {stars: str(label) for stars, label in LEVEL_LABELS.items()}
    shown = [ev[name] for name in dict.fromkeys(FIELDS)]
    query = (
        select(*shown)
        .where(and_(True, *queries._conditions(filters)))
        .order_by(ev.effective_at, ev.id)
    )
    result = conn.execute(query, execution_options={"stream_results": True, "yield_per": FETCH})
    counts = dict.fromkeys(levels, 0)
    total = 0
    for part in result.partitions():
        rows = [row._mapping for row in part]
        resolver = figures.Resolver.for_rows(conn, rows)
        for row in rows:
            stars = row["stars"]
            if stars in counts and not row["excluded"] and row["repeat_of"] is None:
                counts[stars] += 1
            total += 1
            yield [
                row["id"],
                row["effective_at"],
                levels.get(stars, str(stars)),
                row["channel"],
                ",".join(queries._tags(row["tags"])),
                row["comment"],
                row["case_no"],
                row["service_no"],
                row["item_code"],
                row["window_id"],
                row["staff_id"],
                resolver.unit(row),
                row["origin"],
                row["attempt"],
                _("yes") if row["excluded"] else "",
                row["repeat_of"],
            ]
    yield []
    yield [_("Total"), total]
    yield [_("Counted (not voided, not a repeat)"), sum(counts.values())]
    for stars in (5, 4, 3, 2, 1):
        yield [levels[stars], counts[stars]]


@bp.get("/evaluations/export")
@requires("ratings")
def evaluations_export():
    fmt = request.args.get("format", "csv")
    if fmt not in FORMATS:
        abort(404)
    args = request.args.copy()
    args.pop("format", None)
    try:
        filters = api.parse_filters(args, allowed=api.FILTERS)
    except api.ParamError as exc:
        return render_template("error.html", code=400, message=str(exc)), 400
    scope = current_user.scope()
    unit_label = _("All units")
    if scope is not None:
        filters["units"] = scope
        with get_engine().connect() as conn:
            unit = org.get(conn, "units", current_user.unit_id)
        unit_label = f"{unit['name']} ({current_user.unit_id})" if unit else current_user.unit_id
    title = _("Evaluations")

    def rows():
        with get_engine().connect() as conn:
            yield from evaluation_rows(conn, filters, title, unit_label)

    return response(rows(), fmt, "hcp-evaluations", title)


def init_app(app) -> None:
    app.register_blueprint(bp)
