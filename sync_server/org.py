"""The organisation: the district's tree of units, its windows, staff and
service items, with history.

Units are the district, its streets and towns, villages and communities,
district departments, and the halls and service points under any of them.
Windows, staff and service items belong to a unit. Where anything sits is a
row of `db.placements` valid from one time to another, so moving a person, a
window or a village closes one row and opens the next: a rating keeps the
unit of its time (`rating_unit`, `resolved_unit`).

The first placement of anything is valid since ever (`SINCE_EVER`): ratings
that arrived before the window or person was entered here resolve to where
it was first put.

Files: one kind a file (units, windows, staff, items), CSV (UTF-8) or Excel
(.xlsx), first row the header (`COLUMNS`). An import is checked whole before
anything is written and written in one transaction: a file with one bad cell
changes nothing, and the error names the row and the column.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path

from flask_babel import gettext as _
from sqlalchemy import and_, func, literal, or_, select, update

from sync_server import db

UNIT_KINDS = (
    "district",
    "street",
    "town",
    "village",
    "community",
    "department",
    "hall",
    "service_point",
)
# GB/T 39046 行使层级 of the divisions (4 县, 5 镇/街道, 6 村/社区)
LEVEL_CODES = {"district": 4, "department": 4, "street": 5, "town": 5, "village": 6, "community": 6}
WHATS = ("units", "windows", "staff", "items")
PLACEMENT_KIND = {"units": "unit", "windows": "window", "staff": "staff", "items": "item"}
TABLES = {
    "units": db.org_units,
    "windows": db.windows,
    "staff": db.staff,
    "items": db.service_items,
}
COLUMNS = {
    "units": ("code", "name", "kind", "parent"),
    "windows": ("code", "name", "unit"),
    "staff": ("code", "name", "unit"),
    "items": ("code", "name", "unit"),
}
UNIT_COLUMN = {"units": "parent", "windows": "unit", "staff": "unit", "items": "unit"}
SINCE_EVER = "0001-01-01T00:00:00Z"
CODE_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_NAME = 200
MAX_ROWS = 50_000
SEED_FILE = Path(__file__).resolve().parent / "data" / "linzi_divisions.csv"


class OrgError(ValueError):
    """A change or a file that cannot be taken; str() says why (and where)."""


class FileProblem(OrgError):
    """A cell of an imported file: names its row (1 = the header) and column."""

    def __init__(self, row: int, column: str, problem: str):
        super().__init__(
            _(
                "row %(row)s, column %(column)s: %(problem)s",
                row=row,
                column=column,
                problem=problem,
            )
        )
        self.row = row
        self.column = column
        self.problem = problem


def moment(at: dt.datetime | str | None = None) -> str:
    """A placement time: UTC, to the second, like evaluations.effective_at."""
    if isinstance(at, str):
        return at
    at = at or dt.datetime.now(dt.UTC)
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- reading the tree ---------------------------------------------------------------


def _current(kind: str):
    p = db.placements.c
    return and_(p.kind == kind, p.valid_to.is_(None))


def units(conn, include_retired: bool = False) -> list[dict]:
    """Every unit with its current parent (None for a root), ordered by code."""
    p = db.placements.c
    u = db.org_units.c
    query = (
        select(u.id, u.name, u.kind, u.retired_at, p.unit_id.label("parent"))
        .select_from(
            db.org_units.outerjoin(db.placements, and_(_current("unit"), p.subject_id == u.id))
        )
        .order_by(u.id)
    )
    if not include_retired:
        query = query.where(u.retired_at.is_(None))
    return [dict(row._mapping) for row in conn.execute(query)]


def members(conn, what: str, unit_ids=None, include_retired: bool = False) -> list[dict]:
    """Windows, staff or items with the unit they are in now (optionally only
    those in `unit_ids`)."""
    table = TABLES[what]
    p = db.placements.c
    query = (
        select(table.c.id, table.c.name, table.c.retired_at, p.unit_id.label("unit"))
        .select_from(
            table.outerjoin(
                db.placements, and_(_current(PLACEMENT_KIND[what]), p.subject_id == table.c.id)
            )
        )
        .order_by(table.c.id)
    )
    if not include_retired:
        query = query.where(table.c.retired_at.is_(None))
    if unit_ids is not None:
        query = query.where(p.unit_id.in_(sorted(unit_ids)))
    return [dict(row._mapping) for row in conn.execute(query)]


def children_map(unit_rows) -> dict:
    children: dict = {}
    for unit in unit_rows:
        children.setdefault(unit["parent"], []).append(unit)
    return children


def subtree_ids(conn, root_id: str) -> set[str]:
    """The unit and every unit below it now (retired ones included: their
    past data stays theirs)."""
    children = children_map(units(conn, include_retired=True))
    found, todo = set(), [root_id]
    while todo:
        unit_id = todo.pop()
        if unit_id in found:
            continue
        found.add(unit_id)
        todo.extend(child["id"] for child in children.get(unit_id, []))
    return found


def tree(conn, root_id: str | None = None) -> list[dict]:
    """Nested units ({..., "children": [...]}) from the roots or from `root_id`."""
    rows = units(conn)
    children = children_map(rows)
    known = {row["id"] for row in rows}

    def build(unit):
        return {**unit, "children": [build(c) for c in children.get(unit["id"], [])]}

    if root_id is not None:
        return [build(row) for row in rows if row["id"] == root_id]
    return [build(row) for row in rows if row["parent"] is None or row["parent"] not in known]


def get(conn, what: str, code: str) -> dict | None:
    table = TABLES[what]
    row = conn.execute(select(table).where(table.c.id == code)).first()
    if row is None:
        return None
    item = dict(row._mapping)
    item.pop("photo", None)
    item["unit"] = placed_in(conn, what, code)
    return item


def placed_in(conn, what: str, code: str, at: str | None = None) -> str | None:
    """The unit `code` sits in now, or at time `at`."""
    p = db.placements.c
    query = select(p.unit_id).where(p.kind == PLACEMENT_KIND[what], p.subject_id == code)
    if at is None:
        query = query.where(p.valid_to.is_(None))
    else:
        query = query.where(p.valid_from <= at, or_(p.valid_to.is_(None), p.valid_to > at))
    return conn.execute(query.limit(1)).scalar()


def history(conn, what: str, code: str) -> list[dict]:
    p = db.placements.c
    rows = conn.execute(
        select(p.unit_id, p.valid_from, p.valid_to)
        .where(p.kind == PLACEMENT_KIND[what], p.subject_id == code)
        .order_by(p.valid_from)
    )
    return [dict(row._mapping) for row in rows]


# --- a rating's unit ---------------------------------------------------------------


def rating_inside(conn, record_id: str, units) -> bool:
    """Whether the rating `record_id` belongs to `units` (None: every unit)."""
    if units is None:
        return True
    ev = db.evaluations.c
    found = conn.execute(select(ev.id).where(ev.id == record_id, in_units(units))).first()
    return found is not None


def placed_at(kind: str, subject, at, prefix: str = "at"):
    """The unit `subject` (a `kind` of placement) sat in at `at`, as a scalar
    subquery; `prefix` names its alias, so two uses in one query stay apart."""
    p = db.placements.alias(f"{prefix}_{kind}")
    return (
        select(p.c.unit_id)
        .where(
            p.c.kind == kind,
            p.c.subject_id == subject,
            p.c.valid_from <= at,
            or_(p.c.valid_to.is_(None), p.c.valid_to > at),
        )
        .limit(1)
        .scalar_subquery()
    )


def resolved_unit(ev=None):
    """SQL: the unit an evaluation belongs to, at the time it was made.

    The unit its window was in at that time; else the unit its staff member
    was in; else the org_id it carries (the device's configuration of that
    time). NULL when none is known.
    """
    ev = ev if ev is not None else db.evaluations.c
    return func.coalesce(
        placed_at("window", ev.window_id, ev.effective_at),
        placed_at("staff", ev.staff_id, ev.effective_at),
        ev.org_id,
    )


def rating_unit(conn, record_id: str) -> dict | None:
    """Where a stored rating belongs: {"unit", "window_unit", "staff_unit"}
    at the rating's own time; None for an unknown record."""
    ev = db.evaluations.c
    row = conn.execute(
        select(
            resolved_unit().label("unit"),
            placed_at("window", ev.window_id, ev.effective_at).label("window_unit"),
            placed_at("staff", ev.staff_id, ev.effective_at).label("staff_unit"),
        ).where(ev.id == record_id)
    ).first()
    return dict(row._mapping) if row else None


def in_units(unit_ids):
    """SQL condition: the evaluation belongs to one of `unit_ids` (in its time).

    A cheap necessary condition comes first (its window or staff member was
    ever placed in one of the units, or it carries one as org_id), so the
    exact per-rating check runs only on those candidates."""
    if not unit_ids:
        return literal(False)
    ev = db.evaluations.c
    p = db.placements.c
    units = sorted(unit_ids)

    def ever_in(kind):
        return select(p.subject_id).where(p.kind == kind, p.unit_id.in_(units))

    candidate = or_(
        ev.window_id.in_(ever_in("window")),
        ev.staff_id.in_(ever_in("staff")),
        ev.org_id.in_(units),
    )
    return and_(candidate, resolved_unit().in_(units))


# --- changes -----------------------------------------------------------------------


def check_code(code, column: str = "code") -> str:
    if not isinstance(code, str) or not CODE_PATTERN.fullmatch(code):
        raise OrgError(
            _("%(column)s: must be 1..64 characters of A-Z a-z 0-9 . _ -", column=column)
        )
    return code


def check_name(name) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise OrgError(_("name: must not be empty"))
    if len(name) > MAX_NAME or any(ord(ch) < 32 for ch in name):
        raise OrgError(_("name: at most %(n)s characters, no control characters", n=MAX_NAME))
    return name


def check_kind(kind) -> str:
    if kind not in UNIT_KINDS:
        raise OrgError(_("kind: must be one of %(kinds)s", kinds=", ".join(UNIT_KINDS)))
    return kind


def _place(conn, what: str, code: str, unit_id: str | None, at: str) -> None:
    if unit_id is None:
        return
    conn.execute(
        db.placements.insert().values(
            kind=PLACEMENT_KIND[what], subject_id=code, unit_id=unit_id, valid_from=at
        )
    )


def _unplace(conn, what: str, code: str, at: str) -> None:
    p = db.placements.c
    conn.execute(
        update(db.placements)
        .where(p.kind == PLACEMENT_KIND[what], p.subject_id == code, p.valid_to.is_(None))
        .values(valid_to=at)
    )


def _active_unit(conn, unit_id, column: str) -> str:
    row = conn.execute(select(db.org_units).where(db.org_units.c.id == unit_id)).first()
    if row is None:
        raise OrgError(_("%(column)s: unknown unit %(code)r", column=column, code=unit_id))
    if row.retired_at:
        raise OrgError(_("%(column)s: unit %(code)r is retired", column=column, code=unit_id))
    return unit_id


def add(
    conn, what: str, code: str, name: str, unit: str | None, kind: str | None = None
) -> list[dict]:
    """A new unit (kind, parent `unit`, None for a root) or window/staff/item in
    `unit`. Returns the keypads whose roster could not follow (_follow)."""
    table = TABLES[what]
    check_code(code)
    name = check_name(name)
    values = {"id": code, "name": name, "created_at": db.utc_now()}
    if what == "units":
        values["kind"] = check_kind(kind)
    elif unit is None:
        raise OrgError(_("unit: must not be empty"))
    if unit is not None:
        _active_unit(conn, unit, UNIT_COLUMN[what])
    if conn.execute(select(table.c.id).where(table.c.id == code)).first() is not None:
        raise OrgError(_("code: %(code)r already exists", code=code))
    conn.execute(table.insert().values(**values))
    _place(conn, what, code, unit, SINCE_EVER)
    if what == "staff":
        return _follow(conn, f"org.staff.add:{code}", units={unit})
    return []


def _follow(conn, cause: str, units=(), windows=(), staff=()) -> list[dict]:
    """The keypads' rosters follow a change of staff or windows in the same
    transaction (sync_server/fleet.py follow_org): new desired config
    versions; returns those that a keypad could not hold, left as they were."""
    from sync_server import fleet

    return fleet.follow_org(conn, units=units, windows=windows, staff=staff, cause=cause)


def move(conn, what: str, code: str, unit: str, at: str | None = None) -> list[dict]:
    """Put `code` under `unit` from `at` (now): its past stays where it was.
    Returns the keypads whose roster could not follow (_follow)."""
    at = moment(at)
    current = get(conn, what, code)
    if current is None:
        raise OrgError(_("code: unknown %(code)r", code=code))
    if current["retired_at"]:
        raise OrgError(_("code: %(code)r is retired", code=code))
    _active_unit(conn, unit, UNIT_COLUMN[what])
    if current["unit"] == unit:
        raise OrgError(_("%(column)s: already there", column=UNIT_COLUMN[what]))
    if what == "units" and unit in subtree_ids(conn, code):
        raise OrgError(_("parent: a unit cannot be put under itself"))
    p = db.placements.c
    later = conn.execute(
        select(func.max(p.valid_from)).where(p.kind == PLACEMENT_KIND[what], p.subject_id == code)
    ).scalar()
    if later is not None and later >= at:
        raise OrgError(_("at: must be after the last move (%(at)s)", at=later))
    _unplace(conn, what, code, at)
    _place(conn, what, code, unit, at)
    if what == "staff":
        return _follow(conn, f"org.staff.move:{code}", units={current["unit"], unit})
    if what == "windows":
        return _follow(conn, f"org.windows.move:{code}", windows={code})
    return []


def rename(conn, what: str, code: str, name: str, kind: str | None = None) -> list[dict]:
    """A new name (and kind, for a unit). Returns the keypads whose roster
    could not follow (_follow)."""
    _rename(conn, what, code, name, kind)
    if what == "staff":
        unit = placed_in(conn, what, code)
        return _follow(conn, f"org.staff.rename:{code}", units={unit}, staff={code})
    return []


def _rename(conn, what: str, code: str, name: str, kind: str | None = None) -> None:
    table = TABLES[what]
    values = {"name": check_name(name)}
    if what == "units" and kind is not None:
        values["kind"] = check_kind(kind)
    if conn.execute(update(table).where(table.c.id == code).values(**values)).rowcount != 1:
        raise OrgError(_("code: unknown %(code)r", code=code))


def retire(conn, what: str, code: str, at: str | None = None) -> list[dict]:
    """Out of use from `at`: kept with its history, no longer placed anywhere.
    A unit with units, windows, staff or items still in it cannot be retired."""
    at = moment(at)
    current = get(conn, what, code)
    if current is None:
        raise OrgError(_("code: unknown %(code)r", code=code))
    if current["retired_at"]:
        raise OrgError(_("code: %(code)r is retired", code=code))
    if what == "units":
        p = db.placements.c
        inside = conn.execute(
            select(func.count())
            .select_from(db.placements)
            .where(p.unit_id == code, p.valid_to.is_(None))
        ).scalar()
        if inside:
            raise OrgError(_("code: %(code)r still has %(n)s things in it", code=code, n=inside))
    table = TABLES[what]
    conn.execute(update(table).where(table.c.id == code).values(retired_at=at))
    _unplace(conn, what, code, at)
    if what == "staff":
        return _follow(conn, f"org.staff.retire:{code}", units={current["unit"]})
    return []


def set_photo(conn, code: str, data: bytes | None, content_type: str | None) -> None:
    conn.execute(
        update(db.staff).where(db.staff.c.id == code).values(photo=data, photo_type=content_type)
    )


def photo(conn, code: str):
    row = conn.execute(
        select(db.staff.c.photo, db.staff.c.photo_type).where(db.staff.c.id == code)
    ).first()
    return (row.photo, row.photo_type) if row and row.photo else None


# --- seed, files -------------------------------------------------------------------


def seed(engine) -> bool:
    """On first start (no unit at all): Linzi's district, streets and towns
    from sync_server/data/linzi_divisions.csv. True when it seeded."""
    with engine.begin() as conn:
        if conn.execute(select(func.count()).select_from(db.org_units)).scalar():
            return False
        rows = read_file(SEED_FILE.read_bytes(), SEED_FILE.name)
        codes = {row[0] for row in rows[1:]}
        # the district's parent (Zibo, 3703) is outside the table: the district is a root
        rows = [rows[0]] + [[*row[:3], row[3] if row[3] in codes else ""] for row in rows[1:]]
        import_rows(conn, "units", rows)
    return True


def read_file(data: bytes, filename: str) -> list[list[str]]:
    """The rows of a CSV (UTF-8, with or without BOM) or .xlsx file as text cells."""
    if filename.lower().endswith(".xlsx"):
        import openpyxl

        try:
            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception:  # noqa: BLE001 - openpyxl raises many kinds for a bad file
            raise OrgError(_("file: not an Excel (.xlsx) workbook")) from None
        sheet = book.worksheets[0]
        rows = []
        for values in sheet.iter_rows(values_only=True):
            rows.append(["" if v is None else _cell_text(v) for v in values])
            if len(rows) > MAX_ROWS + 1:
                break
        book.close()
    elif filename.lower().endswith(".csv"):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise OrgError(_("file: a CSV file must be UTF-8 text")) from None
        rows = list(csv.reader(io.StringIO(text, newline="")))
    else:
        raise OrgError(_("file: must be a .csv or .xlsx file"))
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()
    if len(rows) > MAX_ROWS + 1:
        raise OrgError(_("file: more than %(n)s rows", n=MAX_ROWS))
    return rows


def _cell_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def import_rows(conn, what: str, rows: list[list[str]]) -> dict:
    """Add, rename and move what the rows say, all or nothing (the caller's
    transaction): every row is checked before the first change.

    Returns {"added": n, "changed": n, "moved": n, "unchanged": n}, and
    "keypads_held": n when staff or windows changed and n keypads could not
    take their unit's new roster (_follow).
    """
    if not rows:
        raise FileProblem(1, COLUMNS[what][0], _("the file is empty"))
    header = [cell.strip().lower() for cell in rows[0]]
    for name in header:
        if name and name not in COLUMNS[what]:
            raise FileProblem(1, name, _("unknown column"))
    for name in COLUMNS[what]:
        if name not in header:
            raise FileProblem(1, name, _("missing column"))
    index = {name: header.index(name) for name in COLUMNS[what]}
    unit_column = UNIT_COLUMN[what]
    known_units = {row["id"]: row for row in units(conn, include_retired=True)}
    existing = {row["id"]: row for row in members_or_units(conn, what)}
    seen: dict[str, int] = {}
    plan = []
    for number, cells in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        record = {name: (cells[i].strip() if i < len(cells) else "") for name, i in index.items()}
        for name in COLUMNS[what]:
            if name == "parent":
                continue
            if not record[name]:
                raise FileProblem(number, name, _("must not be empty"))
        for name in ("code", unit_column):
            if record[name]:
                try:
                    check_code(record[name], name)
                except OrgError:
                    raise FileProblem(
                        number, name, _("must be 1..64 characters of A-Z a-z 0-9 . _ -")
                    ) from None
        try:
            check_name(record["name"])
        except OrgError:
            raise FileProblem(
                number, "name", _("at most %(n)s characters, no control characters", n=MAX_NAME)
            ) from None
        if what == "units" and record["kind"] not in UNIT_KINDS:
            raise FileProblem(
                number, "kind", _("must be one of %(kinds)s", kinds=", ".join(UNIT_KINDS))
            )
        code = record["code"]
        if code in seen:
            raise FileProblem(
                number, "code", _("%(code)r already in row %(row)s", code=code, row=seen[code])
            )
        seen[code] = number
        plan.append((number, record))
    file_units = {record["code"] for _n, record in plan} if what == "units" else set()
    parents = {}
    for number, record in plan:
        target = record[unit_column] or None
        if target is None:
            parents[record["code"]] = None
            continue
        unit = known_units.get(target)
        if target not in file_units and (unit is None or unit["retired_at"]):
            problem = _("unknown unit %(code)r", code=target)
            if unit is not None:
                problem = _("unit %(code)r is retired", code=target)
            raise FileProblem(number, unit_column, problem)
        parents[record["code"]] = target
    if what == "units":
        _check_no_cycle(known_units, parents, {r["code"]: n for n, r in plan})
    counts = {"added": 0, "changed": 0, "moved": 0, "unchanged": 0}
    touched_units, touched_codes = set(), set()  # whose keypads' rosters follow
    now = moment()
    # parents first, so a unit and its children can come in any order
    for _number, record in _parents_first(plan, parents) if what == "units" else plan:
        code, target = record["code"], parents[record["code"]]
        old = existing.get(code)
        if old is None:
            table = TABLES[what]
            values = {"id": code, "name": record["name"], "created_at": db.utc_now()}
            if what == "units":
                values["kind"] = record["kind"]
            conn.execute(table.insert().values(**values))
            _place(conn, what, code, target, SINCE_EVER)
            counts["added"] += 1
            touched_units.add(target)
            continue
        touched = False
        if old["name"] != record["name"] or (what == "units" and old["kind"] != record["kind"]):
            _rename(conn, what, code, record["name"], record.get("kind"))
            counts["changed"] += 1
            touched = True
        if old["retired_at"]:
            table = TABLES[what]
            conn.execute(update(table).where(table.c.id == code).values(retired_at=None))
        if old["unit"] != target or old["retired_at"]:
            _unplace(conn, what, code, now)
            _place(conn, what, code, target, now)
            counts["moved"] += 1
            touched = True
        if not touched:
            counts["unchanged"] += 1
        else:
            touched_units.update((old["unit"], target))
            touched_codes.add(code)
    if what == "staff":
        held = _follow(conn, "org.staff.import", units=touched_units, staff=touched_codes)
    elif what == "windows":
        held = _follow(conn, "org.windows.import", windows=touched_codes)
    else:
        held = []
    if held:
        counts["keypads_held"] = len(held)
    return counts


def members_or_units(conn, what: str) -> list[dict]:
    if what == "units":
        return [{**row, "unit": row["parent"]} for row in units(conn, include_retired=True)]
    return members(conn, what, include_retired=True)


def _check_no_cycle(known_units, parents, rows) -> None:
    def parent_of(code):
        if code in parents:
            return parents[code]
        unit = known_units.get(code)
        return unit["parent"] if unit else None

    for code, number in rows.items():
        seen, step = {code}, parent_of(code)
        while step is not None:
            if step in seen:
                raise FileProblem(number, "parent", _("a unit cannot be put under itself"))
            seen.add(step)
            step = parent_of(step)


def _parents_first(plan, parents):
    by_code = {record["code"]: (number, record) for number, record in plan}
    done, ordered = set(), []

    def visit(code):
        if code in done or code not in by_code:
            return
        done.add(code)
        visit(parents.get(code))
        ordered.append(by_code[code])

    for _number, record in plan:
        visit(record["code"])
    return ordered


def export_rows(conn, what: str, unit_ids=None) -> list[list[str]]:
    """The header and one row per current unit/window/staff/item (optionally
    only those in `unit_ids`), in the import's format."""
    rows = [list(COLUMNS[what])]
    if what == "units":
        for unit in units(conn):
            if unit_ids is None or unit["id"] in unit_ids:
                rows.append([unit["id"], unit["name"], unit["kind"], unit["parent"] or ""])
    else:
        for item in members(conn, what, unit_ids):
            rows.append([item["id"], item["name"], item["unit"] or ""])
    return rows


def to_csv(rows) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8-sig")  # the BOM makes Excel read it as UTF-8


def to_xlsx(rows, title: str) -> bytes:
    import openpyxl
    from openpyxl.cell import WriteOnlyCell

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])
    for row in rows:
        cells = []
        for value in row:
            cell = WriteOnlyCell(sheet, value=value)
            if isinstance(value, str):
                cell.data_type = "s"  # text, never a formula, whatever it starts with
            cells.append(cell)
        sheet.append(cells)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
