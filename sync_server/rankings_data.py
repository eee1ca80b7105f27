"""Rankings and 通报: the figures of a period, ranked, and their snapshots.

`compute(conn, period)` ranks units, towns (streets and towns: 镇街),
windows, staff and service items of a period of local days (Asia/Shanghai)
by five figures, and stores the result as a snapshot (`ranking_snapshots`)
that later changes to the data do not alter; `figures_for` does the same
without storing (an on-demand look at any period). `tick(engine)` is the
month-end hook: once a month is over, the first call computes its snapshot.

The figures, per entity:

- 好评率 and 差评数 from the pre-aggregated figures (sync_server/figures.py
  `totals`): voided ratings (`excluded`) and repeats (`repeat_of`) are not in
  them. Units count their own ratings; a town counts its whole subtree.
- on-time rectification rate (差评按期整改率) = cases rectified by their
  due_at (deadlines.on_time, as on the case pages and in the ledger) ÷ cases
  due in the period (due_at on one of its days; a case not yet rectified
  whose deadline has not passed is not judged yet);
- return-visit rate (回访率) = cases visited ÷ cases fed back, of the cases of
  the period's ratings;
- 主动评价率 = service events rated ÷ service events handled (figures.activity).

Cases count under their responsible unit (cases.unit_id) and their window,
staff member and item; a case whose rating is voided, excluded or a repeat
counts nowhere.

Ranks are competition ranks (1, 2, 2, 4): equal figures share a rank. 好评率,
on-time, return-visit and 主动评价率 rank highest first, 差评数 lowest first;
an entity without the figure (no ratings, no cases due...) is not ranked by it.
The 通报 praises the units and towns ranked in the first `praise_places` by
好评率 (rank <= praise_places) and lists those in the last `bottom_places`
(fewer than bottom_places ranked below them, so a tie for last is listed
whole; a praised one never); either only within its half of the ranking
(rank <= half; fewer than half below), so a short ranking does not praise
everyone and a single unit is neither praised nor listed. A month's 通报 also
lists those that were near the bottom in each of the last `bottom_periods`
months.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
from zoneinfo import ZoneInfo

from flask_babel import gettext as _
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.exc import IntegrityError

from sync_server import db, deadlines, figures, org
from sync_server.schema_cases import cases
from sync_server.schema_rankings import ranking_snapshots

LOCAL = ZoneInfo("Asia/Shanghai")
DIMENSIONS = ("unit", "town", "window", "staff", "item")
METRICS = ("good_rate", "bad", "on_time_rate", "visit_rate", "active_rate")
LOWEST_FIRST = {"bad"}
TOWN_KINDS = ("street", "town")
MONTH = re.compile(r"(\d{4})-(\d{2})")
QUARTER = re.compile(r"(\d{4})-Q([1-4])")
YEAR = re.compile(r"(\d{4})")
RANGE = re.compile(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})")
MAX_PERIOD_DAYS = 366
VOIDED_APPEALS = ("mistaken", "malicious")
MEMBER_TABLE = {"window": "windows", "staff": "staff", "item": "items"}
CASE_COLUMN = {"window": "window_id", "staff": "staff_id", "item": "item_code"}


class PeriodError(ValueError):
    """A period that cannot be read; str() says why."""


def parse_period(text) -> tuple[str, dt.date, dt.date]:
    """'2026-10' (a month), '2026-Q4' (a quarter), '2026' (a year) or
    '2026-10-01..2026-10-15' (local days, inclusive) -> (normalised period,
    first day, last day)."""
    text = (text or "").strip()
    if m := MONTH.fullmatch(text):
        year, month = int(m.group(1)), int(m.group(2))
        if not (2000 <= year <= 2100 and 1 <= month <= 12):
            raise PeriodError(_("period: no month %(text)r", text=text))
        last = calendar.monthrange(year, month)[1]
        return text, dt.date(year, month, 1), dt.date(year, month, last)
    if m := QUARTER.fullmatch(text) or YEAR.fullmatch(text):
        year = int(m.group(1))
        if not 2000 <= year <= 2100:
            raise PeriodError(_("period: no year %(text)r", text=text))
        if m.re is YEAR:
            return text, dt.date(year, 1, 1), dt.date(year, 12, 31)
        first_month = 3 * int(m.group(2)) - 2
        last = dt.date(year, first_month + 2, calendar.monthrange(year, first_month + 2)[1])
        return text, dt.date(year, first_month, 1), last
    if m := RANGE.fullmatch(text):
        try:
            first, last = dt.date.fromisoformat(m.group(1)), dt.date.fromisoformat(m.group(2))
        except ValueError:
            raise PeriodError(_("period: no such day in %(text)r", text=text)) from None
        if last < first:
            raise PeriodError(_("period: the last day is before the first"))
        if (last - first).days >= MAX_PERIOD_DAYS:
            raise PeriodError(_("period: at most %(days)s days", days=MAX_PERIOD_DAYS))
        return text, first, last
    raise PeriodError(_("period: must be YYYY-MM, YYYY-Qn, YYYY or YYYY-MM-DD..YYYY-MM-DD"))


def is_month(period: str) -> bool:
    return MONTH.fullmatch(period) is not None


def previous_month(period: str) -> str:
    year, month = int(period[:4]), int(period[5:7])
    year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return f"{year:04d}-{month:02d}"


def _months_back(day: dt.date, months: int) -> dt.date:
    """The first of the month `months` before `day`'s month."""
    index = day.year * 12 + day.month - 1 - months
    return dt.date(index // 12, index % 12 + 1, 1)


def previous_period(period: str) -> str:
    """The period of the same kind just before `period`: the month, quarter
    or year before; for days, as many whole months before when the days are
    whole months (2026-08-01..2026-09-30 -> 2026-06-01..2026-07-31), else as
    many days just before (2026-10-11..2026-10-20 -> 2026-10-01..2026-10-10)."""
    period, first, last = parse_period(period)
    if MONTH.fullmatch(period):
        earlier = previous_month(period)
    elif m := QUARTER.fullmatch(period):
        year, quarter = int(m.group(1)), int(m.group(2))
        year, quarter = (year - 1, 4) if quarter == 1 else (year, quarter - 1)
        earlier = f"{year:04d}-Q{quarter}"
    elif YEAR.fullmatch(period):
        earlier = f"{int(period) - 1:04d}"
    else:
        if first.day == 1 and (last + dt.timedelta(days=1)).day == 1:
            months = (last.year - first.year) * 12 + last.month - first.month + 1
            start = _months_back(first, months)
        else:
            start = first - dt.timedelta(days=(last - first).days + 1)
        earlier = f"{start.isoformat()}..{(first - dt.timedelta(days=1)).isoformat()}"
    parse_period(earlier)  # PeriodError before the years the rankings know
    return earlier


def _utc_bounds(first: dt.date, last: dt.date) -> tuple[str, str]:
    since = dt.datetime.combine(first, dt.time(), tzinfo=LOCAL)
    before = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=LOCAL)
    return deadlines.format_utc(since), deadlines.format_utc(before)


def _rate(part: int, whole: int):
    return round(part / whole, 4) if whole else None


def _blank(entity_id: str, name: str, unit_id) -> dict:
    return {
        "id": entity_id, "name": name, "unit_id": unit_id,
        "valid": 0, "good": 0, "bad": 0, "good_rate": None, "stars": [0, 0, 0, 0, 0],
        "cases_due": 0, "cases_on_time": 0, "on_time_rate": None,
        "cases_fed_back": 0, "cases_visited": 0, "visit_rate": None,
        "events": 0, "events_rated": 0, "active_rate": None,
    }  # fmt: skip


def _case_counts(conn, dimension: str, first: dt.date, last: dt.date, now_utc: str) -> dict:
    """key -> {cases_due, cases_on_time, cases_fed_back, cases_visited} of
    the counting cases (not voided, their rating neither excluded nor a
    repeat), grouped in the database by the unit, window, staff member or
    item: two queries bounded by the period (due_at, effective_at)."""
    since, before = _utc_bounds(first, last)
    c, ev = cases.c, db.evaluations.c
    column = c[{"unit": "unit_id", **CASE_COLUMN}[dimension]]
    counting = and_(
        column.is_not(None),
        c.state != "voided",
        or_(c.appeal_state.is_(None), c.appeal_state.not_in(VOIDED_APPEALS)),
        ev.excluded.is_(False),
        ev.repeat_of.is_(None),
    )
    joined = cases.join(db.evaluations, ev.id == c.record_id)
    # rectified by the deadline: the definition the case pages use too
    on_time = case((deadlines.on_time(c.rectified_at, c.due_at), 1), else_=0)
    # judged once rectified, or once the deadline passed without it
    judged = or_(c.rectified_at.is_not(None), func.substr(c.due_at, 1, 19) <= now_utc[:19])
    out: dict = {}

    def entry(key):
        return out.setdefault(
            key, {"cases_due": 0, "cases_on_time": 0, "cases_fed_back": 0, "cases_visited": 0}
        )

    query = (
        select(column, func.count(), func.sum(on_time))
        .select_from(joined)
        .where(counting, c.due_at >= since, c.due_at < before, judged)
        .group_by(column)
    )
    for key, count, in_time in conn.execute(query):
        entry(key).update(cases_due=count, cases_on_time=int(in_time or 0))
    visited = case((and_(c.fed_back_at.is_not(None), c.visited_at.is_not(None)), 1), else_=0)
    query = (
        select(column, func.count(c.fed_back_at), func.sum(visited))
        .select_from(joined)
        .where(counting, c.effective_at >= since, c.effective_at < before)
        .group_by(column)
    )
    for key, fed_back, seen in conn.execute(query):
        entry(key).update(cases_fed_back=fed_back, cases_visited=int(seen or 0))
    return out


def _finish(row: dict, rate_stars) -> dict:
    counts = figures.figures_of(row["stars"], rate_stars)
    row.update(valid=counts["valid"], good=counts["good"], bad=counts["bad"])
    row["good_rate"] = counts["good_rate"]
    row["on_time_rate"] = _rate(row["cases_on_time"], row["cases_due"])
    row["visit_rate"] = _rate(row["cases_visited"], row["cases_fed_back"])
    row["active_rate"] = _rate(row["events_rated"], row["events"])
    return row


def rank(rows: list[dict]) -> list[dict]:
    """Give every row `ranks` {metric: competition rank or None}; return
    the rows ordered by 好评率 rank (unranked last), then 差评数, then id."""
    for row in rows:
        row["ranks"] = {}
    for metric in METRICS:
        judged = [row for row in rows if _has(row, metric)]
        sign = 1 if metric in LOWEST_FIRST else -1
        judged.sort(key=lambda r: sign * r[metric])
        previous, position = None, 0
        for index, row in enumerate(judged, start=1):
            if row[metric] != previous:
                position, previous = index, row[metric]
            row["ranks"][metric] = position
        for row in rows:
            row["ranks"].setdefault(metric, None)
    big = len(rows) + 1
    rows.sort(key=lambda r: (r["ranks"]["good_rate"] or big, r["ranks"]["bad"] or big, r["id"]))
    return rows


def _has(row: dict, metric: str) -> bool:
    if metric == "bad":
        return row["valid"] > 0
    return row[metric] is not None


def figures_for(conn, period: str, now_utc: str | None = None, rate_stars=None) -> dict:
    """Every dimension's ranked rows of a period, and the 通报's lists
    (without the consecutive-periods list: `compute` adds it)."""
    period, first, last = parse_period(period)
    now_utc = now_utc or deadlines.format_utc(dt.datetime.now(dt.UTC))
    start, end = first.isoformat(), last.isoformat()
    units = {u["id"]: u for u in org.units(conn, include_retired=True)}
    stars = figures._rate_stars(rate_stars)
    result = {}

    # units: each its own ratings, cases and events
    unit_rows = {}

    def unit_row(unit_id):
        if unit_id not in unit_rows:
            unit = units.get(unit_id)
            name = unit["name"] if unit else unit_id
            unit_rows[unit_id] = _blank(unit_id, name, unit_id)
        return unit_rows[unit_id]

    for unit_id, counts in figures.totals(conn, "unit", start, end, rate_stars=stars).items():
        if unit_id:
            unit_row(unit_id)["stars"] = [counts["by_stars"][s] for s in (1, 2, 3, 4, 5)]
    for unit_id, events in figures.activity(conn, "unit", start, end).items():
        if unit_id:
            unit_row(unit_id).update(events=events["handled"], events_rated=events["rated"])
    for unit_id, counts in _case_counts(conn, "unit", first, last, now_utc).items():
        unit_row(unit_id).update(counts)
    result["unit"] = rank([_finish(row, stars) for row in unit_rows.values()])

    # towns: their whole subtree
    town_of = _towns(units)
    towns = {}
    for unit_id, row in unit_rows.items():
        town_id = town_of.get(unit_id)
        if town_id is None:
            continue
        town = towns.setdefault(town_id, _blank(town_id, units[town_id]["name"], town_id))
        town["stars"] = [a + b for a, b in zip(town["stars"], row["stars"], strict=True)]
        for key in ("cases_due", "cases_on_time", "cases_fed_back", "cases_visited"):
            town[key] += row[key]
        town["events"] += row["events"]
        town["events_rated"] += row["events_rated"]
    result["town"] = rank([_finish(row, stars) for row in towns.values()])

    # windows, staff, items
    for dimension, what in MEMBER_TABLE.items():
        members = {m["id"]: m for m in org.members(conn, what, include_retired=True)}
        rows = {}

        def member_row(key, members=members, rows=rows):
            if key not in rows:
                member = members.get(key)
                rows[key] = _blank(
                    key, member["name"] if member else key, member["unit"] if member else None
                )
            return rows[key]

        for key, counts in figures.totals(conn, dimension, start, end, rate_stars=stars).items():
            member_row(key)["stars"] = [counts["by_stars"][s] for s in (1, 2, 3, 4, 5)]
        for key, events in figures.activity(conn, dimension, start, end).items():
            member_row(key).update(events=events["handled"], events_rated=events["rated"])
        for key, counts in _case_counts(conn, dimension, first, last, now_utc).items():
            member_row(key).update(counts)
        result[dimension] = rank([_finish(row, stars) for row in rows.values()])

    return {
        "period": period,
        "first_day": start,
        "last_day": end,
        "good_rate_stars": list(stars),
        "dimensions": result,
    }


def _towns(units: dict) -> dict:
    """unit id -> the street or town (镇街) it lies in (itself for one)."""
    found = {}
    for unit_id in units:
        current, seen = unit_id, set()
        while current is not None and current in units and current not in seen:
            if units[current]["kind"] in TOWN_KINDS:
                found[unit_id] = current
                break
            seen.add(current)
            current = units[current]["parent"]
    return found


def notices(data: dict, settings: dict) -> dict:
    """The 通报's lists for units and towns: praised (ranked in the first
    praise_places by 好评率, within the top half) and near the bottom (in the
    last bottom_places, within the bottom half, not praised). Each: [{id,
    name, rank, good_rate, valid}]."""
    out = {}
    for dimension in ("unit", "town"):
        ranked = [r for r in data["dimensions"][dimension] if r["ranks"]["good_rate"] is not None]
        half = len(ranked) // 2
        top = min(settings["praise_places"], half)
        praised = [r for r in ranked if r["ranks"]["good_rate"] <= top]
        praised_ids = {r["id"] for r in praised}
        last = min(settings["bottom_places"], half)
        bottom = [r for r in ranked if _worse(ranked, r) < last and r["id"] not in praised_ids]
        out[dimension] = {
            "praised": [_brief(r) for r in praised],
            "bottom": [_brief(r) for r in bottom],
        }
    return out


def _worse(ranked: list[dict], row: dict) -> int:
    """How many ranked rows have a worse 好评率 rank than `row`."""
    return sum(1 for r in ranked if r["ranks"]["good_rate"] > row["ranks"]["good_rate"])


def _brief(row: dict) -> dict:
    return {
        "id": row["id"], "name": row["name"], "rank": row["ranks"]["good_rate"],
        "good_rate": row["good_rate"], "valid": row["valid"],
    }  # fmt: skip


def snapshot(conn, period: str) -> dict | None:
    """The stored snapshot of a period (its data, with period facts), or None."""
    s = ranking_snapshots.c
    row = conn.execute(select(ranking_snapshots).where(s.period == period)).first()
    if row is None:
        return None
    data = json.loads(row.data)
    data.update(
        automatic=bool(row.automatic), computed_at=row.computed_at, computed_by=row.computed_by
    )
    return data


def snapshots(conn) -> list[dict]:
    s = ranking_snapshots.c
    query = select(
        s.period, s.first_day, s.last_day, s.automatic, s.computed_at, s.computed_by
    ).order_by(s.first_day.desc(), s.period)
    return [dict(row._mapping) for row in conn.execute(query)]


def _stored_for_days(conn, period: str) -> dict | None:
    """The snapshot of `period`, else one stored under another name for the
    same days (2026-10 and 2026-10-01..2026-10-31 are one period)."""
    stored = snapshot(conn, period)
    if stored is not None:
        return stored
    _name, first, last = parse_period(period)
    s = ranking_snapshots.c
    other = conn.execute(
        select(s.period)
        .where(s.first_day == first.isoformat(), s.last_day == last.isoformat())
        .order_by(s.period)
        .limit(1)
    ).scalar()
    return None if other is None else snapshot(conn, other)


def _bottom_ids(conn, period: str, settings: dict, now_utc: str, rate_stars) -> dict:
    stored = _stored_for_days(conn, period)
    if stored is None:
        stored = figures_for(conn, period, now_utc, rate_stars)
        stored["notices"] = notices(stored, settings)
    return {dim: {r["id"] for r in stored["notices"][dim]["bottom"]} for dim in ("unit", "town")}


def consecutive(conn, data: dict, settings: dict, now_utc: str, rate_stars) -> dict:
    """Units and towns near the bottom in this period and each of the
    bottom_periods - 1 periods of the same kind before it (previous_period:
    months, quarters, years, or as many days; stored snapshots, else
    computed)."""
    out = {"unit": [], "town": []}
    current = {dim: data["notices"][dim]["bottom"] for dim in out}
    period = data["period"]
    still = {dim: {r["id"] for r in rows} for dim, rows in current.items()}
    for _step in range(settings["bottom_periods"] - 1):
        if not any(still.values()):
            break  # nobody left to follow back
        try:
            period = previous_period(period)
        except PeriodError:
            return out  # before the first year the rankings know
        earlier = _bottom_ids(conn, period, settings, now_utc, rate_stars)
        still = {dim: still[dim] & earlier[dim] for dim in still}
    for dim in out:
        out[dim] = [r for r in current[dim] if r["id"] in still[dim]]
    return out


def compute(
    conn,
    period: str,
    *,
    automatic: bool = False,
    actor: str = "system",
    now_utc: str | None = None,
    rate_stars=None,
) -> dict:
    """Compute a period's rankings and 通报 and store them as its snapshot
    (replacing an earlier one of the same period), in the caller's
    transaction. Returns the data stored."""
    now_utc = now_utc or deadlines.format_utc(dt.datetime.now(dt.UTC))
    settings = deadlines.all_settings(conn)
    data = figures_for(conn, period, now_utc, rate_stars)
    data["settings"] = settings
    data["notices"] = notices(data, settings)
    data["consecutive"] = consecutive(conn, data, settings, now_utc, data["good_rate_stars"])
    s = ranking_snapshots.c
    conn.execute(ranking_snapshots.delete().where(s.period == data["period"]))
    conn.execute(
        ranking_snapshots.insert().values(
            period=data["period"],
            first_day=data["first_day"],
            last_day=data["last_day"],
            automatic=automatic,
            computed_at=db.utc_now(),
            computed_by=actor,
            data=json.dumps(data, ensure_ascii=False, sort_keys=True),
        )
    )
    return data


def month_to_compute(conn, now_utc: str) -> str | None:
    """The month that is over and has no snapshot yet (only the one just
    ended: history is computed on demand), else None."""
    today = deadlines.local_day(now_utc)
    ended = previous_month(f"{today.year:04d}-{today.month:02d}")
    return None if snapshot(conn, ended) is not None else ended


def tick(engine, now_utc: str | None = None) -> str | None:
    """The month-end hook: call it now and then (every few minutes); once a
    month is over (from 00:00 Beijing time on the 1st), the first call stores
    that month's snapshot. Returns the period computed, or None."""
    now_utc = now_utc or deadlines.format_utc(dt.datetime.now(dt.UTC))
    try:
        with engine.begin() as conn:
            period = month_to_compute(conn, now_utc)
            if period is None:
                return None
            compute(conn, period, automatic=True, now_utc=now_utc)
    except IntegrityError:
        return None  # another collector stored it first
    return period
