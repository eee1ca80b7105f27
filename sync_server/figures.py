"""Pre-aggregated figures maintained by ingest (issue 8).

A feature module (sync_server/features.py): init_app, before_store and
after_store are its joins with the collector.

A rating counts in figures when it is neither excluded (voided by a
supervisor's review) nor a repeat of a service event rated already
(`repeat_of`). `set_excluded` is the one way a rating is voided or restored,
so the figures follow.

The figures live in `figures_daily` (sync_server/schema_figures.py): counts per
level, per local day (Asia/Shanghai), per resolved unit, per channel and per
key of each dimension. They are kept three ways, all through `_apply`:

- `after_store`, in the transaction that stores new ratings: the batch's
  units are resolved with one query (`Resolver`), the increments of the
  whole batch merged in Python and written with one upsert statement
  (``n = n + excluded.n``, atomic on PostgreSQL when two collectors commit at
  once; rows are written in key order, so two batches never wait on each
  other crosswise); no query per rating;
- `set_excluded` takes a voided rating out (and a restored one back in);
- `rebuild` recomputes the table from the evaluations (after an upgrade, or
  `hcp collector rebuild-figures`), and a test proves it equals the
  incremental figures after any mix of ingest, repeats and voids.

A rating keeps the unit of its time: moving a window later changes no row.
(A move entered with a time in the past, before ratings already stored, does
change where those ratings belong; `rebuild` then brings the figures along.)

Reading: `totals(conn, dimension, start_day, end_day, scope, unit, channel=)`
sums the rows of a period, a subtree and (optionally) one channel;
`activity(...)` gives 主动评价率 from the service events (see its docstring
for why it reads them directly).
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import logging
from zoneinfo import ZoneInfo

from sqlalchemy import and_, delete, func, or_, select

from sync_server import db, pg_array
from sync_server.schema_figures import LEVEL_COLUMNS, figures_daily

log = logging.getLogger(__name__)

ZONE = ZoneInfo("Asia/Shanghai")
DIMENSIONS = ("unit", "window", "staff", "item", "channel", "tag", "hour", "day", "month")
STORED_DIMS = ("unit", "window", "staff", "item", "hour", "tag")
MAX_KEY = 100  # figures_daily.key
LEVELS = (1, 2, 3, 4, 5)
BAD_LEVELS = (1, 2)
DEFAULT_RATE_STARS = (5, 4, 3)
KEY_COLUMNS = ("dim", "day", "unit_id", "channel", "key")
MAX_CHANNEL = 16  # figures_daily.channel
MONTHLY = ".m"  # the month rows of a dimension: a long period reads one row a month


# --- the feature's joins -------------------------------------------------------------


def init_app(app) -> None:
    """Pages, exports and API routes; and figures for a database that holds
    ratings but none yet (a collector upgraded to this version)."""
    from sync_server import analytics, exports

    analytics.init_app(app)
    exports.init_app(app)
    engine = app.extensions["hcp_engine"]
    with engine.connect() as conn:
        empty = conn.execute(select(figures_daily.c.dim).limit(1)).first() is None
        rated = conn.execute(select(db.evaluations.c.id).limit(1)).first() is not None
    if empty and rated:
        log.warning("figures: none kept yet for the stored ratings; rebuilding them")
        with engine.begin() as conn:
            rebuild(conn)


def after_store(conn, rows: list[dict]) -> None:
    """New ratings were inserted in this transaction: count those that count."""
    counting = [row for row in rows if _counts(row)]
    if counting:
        resolver = Resolver.for_rows(conn, counting)
        _apply(conn, increments(counting, resolver, +1))


def set_excluded(conn, record_ids: list[str], excluded: bool) -> int:
    """Void (or restore) ratings in the caller's transaction; returns how many
    changed. The ratings stay stored; every figure leaves them out."""
    if not record_ids:
        return 0
    ev = db.evaluations.c
    changed = conn.execute(
        db.evaluations.update()
        .where(ev.id.in_(list(record_ids)), ev.excluded == (not excluded))
        .values(excluded=excluded)
        .returning(*_FIELDS)
    ).all()
    rows = [dict(row._mapping) for row in changed if row.repeat_of is None]
    if rows:
        resolver = Resolver.for_rows(conn, rows)
        _apply(conn, increments(rows, resolver, -1 if excluded else +1))
    return len(changed)


def adjust(conn, record_ids: list[str], sign: int) -> None:
    """Add (+1) or take out (-1) stored ratings by id, whatever their state:
    for a feature that changes whether a rating counts other than by
    `set_excluded` (it must call this in the same transaction)."""
    ev = db.evaluations.c
    rows = [dict(r._mapping) for r in conn.execute(select(*_FIELDS).where(ev.id.in_(record_ids)))]
    if rows:
        _apply(conn, increments(rows, Resolver.for_rows(conn, rows), sign))


# --- from ratings to increments --------------------------------------------------------

_FIELDS = [
    db.evaluations.c[name]
    for name in (
        "id", "stars", "channel", "tags", "item_code", "window_id", "staff_id", "org_id",
        "effective_at", "excluded", "repeat_of",
    )
]  # fmt: skip


def _counts(row: dict) -> bool:
    return not row.get("excluded") and row.get("repeat_of") is None and row.get("stars") in LEVELS


_LOCAL_HOURS: dict[str, tuple[str, str]] = {}


def local_day_hour(utc_text: str) -> tuple[str, str]:
    """'2026-11-26T17:30:00Z' -> ('2026-11-27', '01') in Asia/Shanghai."""
    prefix = utc_text[:13]  # YYYY-MM-DDTHH: the local day and hour follow from it
    found = _LOCAL_HOURS.get(prefix)
    if found is None:
        try:
            moment = dt.datetime.strptime(prefix, "%Y-%m-%dT%H").replace(tzinfo=dt.UTC)
            local = moment.astimezone(ZONE)
            found = (local.strftime("%Y-%m-%d"), local.strftime("%H"))
        except (ValueError, OverflowError):  # not a time: kept under what it says
            found = (utc_text[:10], utc_text[11:13])
        if len(_LOCAL_HOURS) > 200_000:
            _LOCAL_HOURS.clear()
        _LOCAL_HOURS[prefix] = found
    return found


def day_bounds_utc(start_day: str | None, end_day: str | None) -> tuple[str | None, str | None]:
    """Local days (inclusive) -> UTC times [since, before) as stored text."""

    def utc(day):
        local = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), tzinfo=ZONE)
        return local.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    since = utc(start_day) if start_day else None
    before = None
    if end_day:
        before = utc((dt.date.fromisoformat(end_day) + dt.timedelta(days=1)).isoformat())
    return since, before


def _tag_codes(tags) -> list[str]:
    if not tags:
        return []
    if isinstance(tags, str):
        try:
            tags = json.loads(tags)
        except ValueError:
            return []
    if not isinstance(tags, list):
        return []
    return sorted({tag[:MAX_KEY] for tag in tags if isinstance(tag, str) and tag})


class Resolver:
    """The unit each rating belongs to at its own time, as org.resolved_unit
    says in SQL (the window's unit then, else the staff member's, else the
    org_id it carries), from placements read once for many ratings."""

    def __init__(self, placement_rows):
        self.spans: dict[tuple[str, str], list] = {}
        for kind, subject, unit, valid_from, valid_to in placement_rows:
            self.spans.setdefault((kind, subject), []).append((valid_from, valid_to, unit))
        for spans in self.spans.values():
            spans.sort(key=lambda span: span[0])
        self.starts = {key: [span[0] for span in spans] for key, spans in self.spans.items()}

    @classmethod
    def for_rows(cls, conn, rows) -> Resolver:
        """One query for the placements of the rows' windows and staff."""
        windows = sorted({row["window_id"] for row in rows if row.get("window_id")})
        staff = sorted({row["staff_id"] for row in rows if row.get("staff_id")})
        if not windows and not staff:
            return cls([])
        p = db.placements.c
        wanted = []
        if windows:
            wanted.append(and_(p.kind == "window", p.subject_id.in_(windows)))
        if staff:
            wanted.append(and_(p.kind == "staff", p.subject_id.in_(staff)))
        query = select(p.kind, p.subject_id, p.unit_id, p.valid_from, p.valid_to).where(
            or_(*wanted)
        )
        return cls(conn.execute(query).all())

    @classmethod
    def for_all(cls, conn) -> Resolver:
        p = db.placements.c
        query = select(p.kind, p.subject_id, p.unit_id, p.valid_from, p.valid_to).where(
            p.kind.in_(("window", "staff"))
        )
        return cls(conn.execute(query).all())

    def placed(self, kind: str, subject, at: str):
        """The unit `subject` (a `kind` of placement) sat in at `at`, as
        org.placed_at says in SQL; None when it sat in none."""
        if not subject:
            return None
        key = (kind, subject)
        spans = self.spans.get(key)
        if not spans:
            return None
        # the last span starting at or before `at`, if it has not ended by then
        # (a subject's spans follow one another without overlapping)
        index = bisect.bisect_right(self.starts[key], at) - 1
        if index >= 0:
            _valid_from, valid_to, unit = spans[index]
            if valid_to is None or valid_to > at:
                return unit
        return None

    def unit(self, row: dict) -> str | None:
        at = row["effective_at"]
        return (
            self.placed("window", row.get("window_id"), at)
            or self.placed("staff", row.get("staff_id"), at)
            or row.get("org_id")
        )


def increments(rows, resolver: Resolver, sign: int) -> dict[tuple, list[int]]:
    """(dim, day, unit_id, channel, key) -> five level counts, for ratings
    that count: the day's row and the month's of each dimension."""
    out: dict[tuple, list[int]] = {}

    def add(key, index):
        # the day's row, and the month's (dim + ".m", day "YYYY-MM")
        for each in (key, (key[0] + MONTHLY, key[1][:7], *key[2:])):
            counts = out.get(each)
            if counts is None:
                counts = out[each] = [0, 0, 0, 0, 0]
            counts[index] += sign

    for row in rows:
        stars = row.get("stars")
        if stars not in LEVELS:
            continue
        index = stars - 1
        day, hour = local_day_hour(row["effective_at"])
        unit = (resolver.unit(row) or "")[:64]
        channel = (row.get("channel") or "")[:MAX_CHANNEL]
        add(("unit", day, unit, channel, ""), index)
        add(("hour", day, unit, channel, hour), index)
        for dim, field in (("window", "window_id"), ("staff", "staff_id"), ("item", "item_code")):
            value = row.get(field)
            if value:
                add((dim, day, unit, channel, value[:MAX_KEY]), index)
        for tag in _tag_codes(row.get("tags")):
            add(("tag", day, unit, channel, tag), index)
    return out


_ADDED = ", ".join(f"{n} = figures_daily.{n} + excluded.{n}" for n in LEVEL_COLUMNS)
_COLUMNS = ", ".join((*KEY_COLUMNS, *LEVEL_COLUMNS))
_ON_CONFLICT = f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {_ADDED}"
# SQLite: the driver's executemany of one upsert; PostgreSQL: one statement
# whose rows arrive as one array per column (one round trip, one plan)
_UPSERT_SQLITE = (
    f"INSERT INTO figures_daily ({_COLUMNS}) "
    f"VALUES ({', '.join('?' * (len(KEY_COLUMNS) + len(LEVEL_COLUMNS)))}) {_ON_CONFLICT}"
)
_UPSERT_POSTGRESQL = (
    f"INSERT INTO figures_daily ({_COLUMNS}) SELECT * FROM unnest("
    + ", ".join(["%s::text[]"] * len(KEY_COLUMNS) + ["%s::int[]"] * len(LEVEL_COLUMNS))
    + f") {_ON_CONFLICT}"
)


def _apply(conn, changes: dict[tuple, list[int]]) -> None:
    """Add the changes to figures_daily with one upsert statement for the
    whole batch, its rows in key order (two batches never wait on each
    other crosswise): ``n = n + added`` on a key that exists, atomic on
    PostgreSQL when two collectors commit at once; a new row otherwise.

    Straight to the driver, like `rebuild`: SQLAlchemy's per-row parameter
    handling cost more than the upsert (hcp.figures_ingest_cost measures
    it; docs/figures.md has the figures)."""
    if not changes:
        return
    rows = [(*key, *counts) for key, counts in sorted(changes.items())]
    if conn.dialect.name == "postgresql":
        kinds = ["text"] * len(KEY_COLUMNS) + ["integer"] * len(LEVEL_COLUMNS)
        columns = tuple(
            pg_array.param(list(column), kind)
            for column, kind in zip(zip(*rows, strict=True), kinds, strict=True)
        )
        conn.exec_driver_sql(_UPSERT_POSTGRESQL, columns)
    else:
        conn.exec_driver_sql(_UPSERT_SQLITE, rows)


def rebuild(conn, chunk: int = 20_000) -> int:
    """Recompute every figure from the evaluations, in the caller's
    transaction; returns the number of ratings counted.

    On PostgreSQL the figures table is locked first, so a collector storing
    ratings meanwhile waits and adds its batch after; on SQLite the delete
    takes the database's write lock before the evaluations are read."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE figures_daily IN EXCLUSIVE MODE")
    conn.execute(delete(figures_daily))
    resolver = Resolver.for_all(conn)
    ev = db.evaluations.c
    query = select(*_FIELDS).where(ev.excluded.is_(False), ev.repeat_of.is_(None))
    totals: dict[tuple, list[int]] = {}
    counted = 0
    result = conn.execute(query, execution_options={"stream_results": True, "yield_per": chunk})
    for part in result.partitions():
        rows = [row._mapping for row in part]
        counted += sum(1 for row in rows if row["stars"] in LEVELS)
        for key, counts in increments(rows, resolver, +1).items():
            kept = totals.get(key)
            if kept is None:
                totals[key] = counts
            else:
                for index in range(5):
                    kept[index] += counts[index]
    # straight to the driver: SQLAlchemy's per-row parameter handling cost
    # more than the insert itself for a few hundred thousand rows
    marker = "%s" if conn.dialect.name == "postgresql" else "?"
    columns = (*KEY_COLUMNS, *LEVEL_COLUMNS)
    statement = (
        f"INSERT INTO figures_daily ({', '.join(columns)}) "
        f"VALUES ({', '.join([marker] * len(columns))})"
    )
    items = sorted(totals.items())
    for start in range(0, len(items), chunk):
        conn.exec_driver_sql(
            statement, [(*key, *counts) for key, counts in items[start : start + chunk]]
        )
    return counted


# --- reading -----------------------------------------------------------------------------


def figures_of(counts, rate_stars=DEFAULT_RATE_STARS) -> dict:
    """Five level counts (1..5) -> by_stars, valid, good, bad, good_rate.

    good is 好评 (levels 3..5), bad 差评 (1..2); good_rate counts the levels
    of `rate_stars` (HCP_GOOD_RATE_STARS) over the valid ratings, None when
    there are none."""
    by_stars = {level: int(counts[level - 1] or 0) for level in LEVELS}
    valid = sum(by_stars.values())
    bad = sum(by_stars[level] for level in BAD_LEVELS)
    rated = sum(by_stars[level] for level in rate_stars)
    return {
        "by_stars": by_stars,
        "valid": valid,
        "good": valid - bad,
        "bad": bad,
        "good_rate": round(rated / valid, 4) if valid else None,
    }


def _rate_stars(rate_stars):
    if rate_stars is not None:
        return tuple(rate_stars)
    from flask import has_app_context

    if has_app_context():
        from sync_server.queries import good_rate_stars

        return good_rate_stars()
    return DEFAULT_RATE_STARS


def subtree(conn, unit_id: str) -> set[str]:
    """org.subtree_ids, kept for the rest of the request (pages ask often)."""
    from flask import g, has_app_context

    from sync_server import org

    if not has_app_context():
        return org.subtree_ids(conn, unit_id)
    cache = g.setdefault("hcp_subtrees", {})
    if unit_id not in cache:
        cache[unit_id] = org.subtree_ids(conn, unit_id)
    return cache[unit_id]


def units_wanted(conn, scope=None, unit=None) -> set[str] | None:
    """The units whose rows count: the subtree of `unit`, within `scope` (a
    user's units); None for every row, unplaced ratings included."""
    wanted = subtree(conn, unit) if unit is not None else None
    if scope is not None:
        wanted = set(scope) if wanted is None else wanted & set(scope)
    return wanted


def level_counts(
    conn,
    dimension: str,
    start_day: str | None,
    end_day: str | None,
    scope=None,
    unit: str | None = None,
    *,
    channel: str | None = None,
) -> dict[str, list[int]]:
    """`totals` before the figures are made: key -> [n1, n2, n3, n4, n5]
    (for callers that add keys up, a subtree's units say)."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"dimension: must be one of {', '.join(DIMENSIONS)}")
    f = figures_daily.c
    stored = {"channel": "unit", "day": "unit", "month": "unit"}.get(dimension, dimension)
    group = {
        "unit": f.unit_id,
        "day": f.day,
        "channel": f.channel,
        # by month ("YYYY-MM"): a month row's day is its month, a day row's
        # starts with it, so whole months read one row each and the edges days
        "month": func.substr(f.day, 1, 7),
    }.get(dimension, f.key)
    if dimension == "day":  # by day: the day rows
        segments = [(stored, start_day, end_day)]
    else:
        segments = period_segments(stored, start_day, end_day)
    periods = []
    for dim, low, high in segments:
        part = [f.dim == dim]
        if low:
            part.append(f.day >= low)
        if high:
            part.append(f.day <= high)
        periods.append(and_(*part))
    conditions = [or_(*periods)]
    if channel is not None:
        conditions.append(f.channel == channel)
    wanted = units_wanted(conn, scope, unit)
    if wanted is not None:
        if not wanted:
            return {}
        conditions.append(f.unit_id.in_(sorted(wanted)))
    query = (
        select(group, *(func.sum(f[name]) for name in LEVEL_COLUMNS))
        .where(*conditions)
        .group_by(group)
    )
    # a key whose ratings were all voided keeps a row of zeros: not a figure
    return {row[0]: [int(n or 0) for n in row[1:]] for row in conn.execute(query) if any(row[1:])}


def period_segments(dim: str, start_day: str | None, end_day: str | None) -> list[tuple]:
    """The rows that cover a period of local days: month rows for its whole
    months, day rows for the days before and after them.
    [(dim, first, last)], first/last None for open ends."""
    start = dt.date.fromisoformat(start_day) if start_day else None
    end = dt.date.fromisoformat(end_day) if end_day else None
    if start and end and start > end:
        return [(dim, start_day, end_day)]
    # the first whole month starts on or after `start`; the last ends on or before `end`
    first = None
    if start:
        first = (
            start
            if start.day == 1
            else (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        )  # noqa: E501
    last = None
    if end:
        after = end + dt.timedelta(days=1)
        last = (
            end.replace(day=1)
            if after.day == 1
            else (end.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
        )  # noqa: E501
    if first and last and first > last:
        return [(dim, start_day, end_day)]
    segments = [
        (
            dim + MONTHLY,
            first.isoformat()[:7] if first else None,
            last.isoformat()[:7] if last else None,
        )
    ]  # noqa: E501
    if start and first != start:
        segments.append((dim, start_day, (first - dt.timedelta(days=1)).isoformat()))
    if end and last is not None:
        month_end = (last.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        if month_end <= end:
            segments.append((dim, month_end.isoformat(), end_day))
    return segments


def totals(
    conn,
    dimension: str,
    start_day: str | None,
    end_day: str | None,
    scope=None,
    unit: str | None = None,
    *,
    channel: str | None = None,
    rate_stars=None,
) -> dict[str, dict]:
    """Figures of a period of local days (inclusive; None: open) by
    `dimension`, summed over the subtree of `unit` within `scope` (a user's
    units); with neither, every row (ratings placed nowhere under "").

    dimension: unit (key: each unit's own ratings, no roll-up) | window |
    staff | item | channel | tag | hour ("00".."23") | day ("YYYY-MM-DD").
    Each value: `figures_of` (by_stars {1..5}, valid, good, bad, good_rate),
    good_rate by `rate_stars` (default: the app's HCP_GOOD_RATE_STARS).
    `channel` narrows any of them to the ratings of one channel."""
    counts = level_counts(conn, dimension, start_day, end_day, scope, unit, channel=channel)
    stars = _rate_stars(rate_stars)
    return {key: figures_of(levels, stars) for key, levels in counts.items()}


def activity(
    conn, dimension: str, start_day: str | None, end_day: str | None, scope=None, unit=None
) -> dict[str, dict]:
    """主动评价率 = service events rated / service events handled, by unit,
    window, staff or item, over the events handled in a period of local days.

    Read from `service_events` itself rather than from an aggregate kept
    beside it: one grouped query bounded by the period and by the units
    (indexed by unit and time), whose numerator and denominator come from
    the same rows, so they can never drift apart, and no other feature has to
    call into this one when it registers or binds an event. An event counts
    under the unit that registered it as responsible.

    Each value: {"handled", "rated", "active_rate" (None without events)}."""
    from sync_server.schema_channels import service_events

    column = {
        "unit": service_events.c.unit_id,
        "window": service_events.c.window_id,
        "staff": service_events.c.staff_id,
        "item": service_events.c.item_code,
    }.get(dimension)
    if column is None:
        raise ValueError("dimension: must be one of unit, window, staff, item")
    e = service_events.c
    since, before = day_bounds_utc(start_day, end_day)
    conditions = [column.is_not(None)]
    if since:
        conditions.append(e.handled_at >= since)
    if before:
        conditions.append(e.handled_at < before)
    wanted = units_wanted(conn, scope, unit)
    if wanted is not None:
        if not wanted:
            return {}
        conditions.append(e.unit_id.in_(sorted(wanted)))
    query = (
        select(column, func.count(), func.count(e.rating_id)).where(*conditions).group_by(column)
    )
    return {
        key: {
            "handled": handled,
            "rated": rated,
            "active_rate": round(rated / handled, 4) if handled else None,
        }
        for key, handled, rated in conn.execute(query)
    }


def all_rows(conn) -> list[tuple]:
    """Every stored row, sorted (tests compare rebuild with ingest by it);
    rows whose counts are all zero are left out (a void then a restore)."""
    f = figures_daily.c
    rows = conn.execute(select(figures_daily).order_by(*(f[c] for c in KEY_COLUMNS))).all()
    return [tuple(row) for row in rows if any(row[len(KEY_COLUMNS) :])]
