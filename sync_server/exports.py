"""Streamed exports: the evaluations and every figure as CSV and Excel.

Both formats are generators, so a million rows never sit in memory:

- CSV (UTF-8 with a byte-order mark, which Excel needs to read Chinese) is
  written a few hundred rows at a time as the database hands them over;
- Excel is written row by row into a zip archive that goes straight into
  the response (`xlsx_chunks`, a small SpreadsheetML writer: see there why
  not openpyxl, which reads the files back in the tests).

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
import zipfile

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


class _Sink:
    """Where the zip archive writes: kept until the generator hands it on."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self):
        if self.parts:
            data = b"".join(self.parts)
            self.parts.clear()
            yield data


MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PACKAGE_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
OFFICE_TYPE = "application/vnd.openxmlformats"
SHEET_TYPE = f"{OFFICE_TYPE}-officedocument.spreadsheetml"
_STATIC = {
    "[Content_Types].xml": (
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        f'<Default Extension="rels" ContentType="{OFFICE_TYPE}-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="/xl/workbook.xml" ContentType="{SHEET_TYPE}.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        f'ContentType="{SHEET_TYPE}.worksheet+xml"/>'
        f'<Override PartName="/xl/styles.xml" ContentType="{SHEET_TYPE}.styles+xml"/>'
        "</Types>"
    ),
    "_rels/.rels": (
        f'<Relationships xmlns="{PACKAGE_RELS}">'
        f'<Relationship Id="rId1" Type="{RELS}/officeDocument" Target="xl/workbook.xml"/>'
        "</Relationships>"
    ),
    "xl/_rels/workbook.xml.rels": (
        f'<Relationships xmlns="{PACKAGE_RELS}">'
        f'<Relationship Id="rId1" Type="{RELS}/worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{RELS}/styles" Target="styles.xml"/>'
        "</Relationships>"
    ),
    "xl/styles.xml": (
        f'<styleSheet xmlns="{MAIN}">'
        '<fonts count="2"><font><sz val="11"/><name val="宋体"/></font>'
        '<font><b/><sz val="14"/><name val="宋体"/></font></fonts>'
        '<fills count="2"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill></fills>'
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
        "</cellStyleXfs>"
        '<cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
        '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/></cellXfs>'
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
        "</styleSheet>"
    ),
}  # fmt: skip
_NOT_XML = dict.fromkeys(
    c for c in range(32) if c not in (9, 10, 13)
)  # XML 1.0 has no place for them
_COLUMN_NAMES: list[str] = []


def _column(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA ..."""
    while len(_COLUMN_NAMES) <= index:
        n, name = len(_COLUMN_NAMES) + 1, ""
        while n:
            n, rest = divmod(n - 1, 26)
            name = chr(65 + rest) + name
        _COLUMN_NAMES.append(name)
    return _COLUMN_NAMES[index]


def _cell(ref: str, value, style: str) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, int | float):
        return f'<c r="{ref}"{style}><v>{value}</v></c>'
    text = escape_xml(str(value).translate(_NOT_XML))
    return f'<c r="{ref}"{style} t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'


def escape_xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xlsx_chunks(rows, sheet_title: str):
    """Rows (lists) -> an .xlsx workbook of one sheet, in chunks as it is made.

    A small SpreadsheetML writer of our own rather than openpyxl: openpyxl's
    write-only mode keeps memory flat too, but without lxml it wrote about
    1,000 rows of 16 cells a second on this machine (an hour for a million
    rows), and it must finish a file before the first byte can leave. Here
    the zip archive is written straight into the response (data
    descriptors: no seeking), deflated as it goes. The first row (the
    title) is bold; text is inline, so no table of strings grows in memory.
    """
    title = "".join(ch for ch in sheet_title if ch not in "[]:*?/\\")[:31] or "Sheet1"
    workbook = (
        f'<workbook xmlns="{MAIN}" xmlns:r="{RELS}"><sheets>'
        f'<sheet name="{escape_xml(title).replace(chr(34), "&quot;")}" sheetId="1" r:id="rId1"/>'
        "</sheets></workbook>"
    )
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in {**_STATIC, "xl/workbook.xml": workbook}.items():
            archive.writestr(
                name, '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + text
            )
        yield from sink.take()
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(
                f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                f'<worksheet xmlns="{MAIN}"><sheetData>'.encode()
            )
            waiting: list[str] = []
            for number, row in enumerate(rows, start=1):
                style = ' s="1"' if number == 1 else ""
                cells = "".join(
                    _cell(f"{_column(i)}{number}", value, style) for i, value in enumerate(row)
                )
                waiting.append(f'<row r="{number}">{cells}</row>')
                if len(waiting) >= CSV_ROWS_PER_CHUNK:
                    sheet.write("".join(waiting).encode())
                    waiting.clear()
                    yield from sink.take()
            waiting.append("</sheetData></worksheet>")
            sheet.write("".join(waiting).encode())
    yield from sink.take()


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


def evaluation_rows(conn, filters: dict, title: str, unit_label: str, period: str = "— — —"):
    """The evaluations export as rows (a generator): the head, one row per
    rating (oldest first), and the totals by level. Units are resolved per
    chunk of ratings with one placements query (figures.Resolver). `period`
    says the filter as the user gave it (local days, or UTC instants)."""
    ev = db.evaluations.c
    yield [title]
    yield [_("Period"), period]
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
    given = {name: args.get(name, "").strip() or "—" for name in ("since", "until")}
    period = f"{given['since']} — {given['until']}"

    def rows():
        with get_engine().connect() as conn:
            yield from evaluation_rows(conn, filters, title, unit_label, period)

    return response(rows(), fmt, "hcp-evaluations", title)


def init_app(app) -> None:
    app.register_blueprint(bp)
