"""Evidence of gaming: fake good reviews (刷好评) and malicious bad ones (issue 13).

Rules over what the devices and channels record (DOMAIN §6). Each finding
names its rule and its evidence (the ratings and the figures that made it),
goes to a supervisor (`gaming` capability, sync_server/gaming_pages.py), and
changes nothing by itself: no rating is deleted, hidden or excluded by a
rule. A supervisor may dismiss a flag, start a 复核 (review) of it, and
decide a review: "confirmed" excludes the ratings it names from the figures
the way a decided appeal does (figures.set_excluded, audited), "dismissed"
leaves them as they are.

The rules (`RULES`) and their settings (`SETTINGS`, app config keys):

- staff_entry: a rating made by staff rather than a citizen: a record whose
  origin is not `citizen` on any channel but paper, or a paper card typed in
  by the very staff member it rates;
- burst_no_case: HCP_GAMING_BURST_COUNT or more ratings on one keypad or
  kiosk within HCP_GAMING_BURST_MINUTES with no case started;
- outside_hours: a keypad or kiosk rating outside HCP_GAMING_OPENING (local
  time) or on a day that is not a working day (Chinese public holidays and
  adjusted working days through chinese_calendar where it knows the year,
  else Monday to Friday);
- before_handled: a rating timed more than HCP_GAMING_TOLERANCE_S before
  its case was handled (the rating's own handled_at, else its service event's);
- one_phone_many: one contact number behind HCP_GAMING_PHONE_CASES or more
  different cases in the period (the number itself never appears: the
  evidence names the ratings, whose contact only a reveal shows);
- identical_text: HCP_GAMING_SAME_TEXT or more ratings of one window with
  the same comment of at least HCP_GAMING_TEXT_MIN characters (spaces and
  punctuation aside) within HCP_GAMING_TEXT_DAYS days;
- top_after_signin: HCP_GAMING_SIGNIN_RUN or more top ratings (非常满意)
  within HCP_GAMING_SIGNIN_MINUTES of a staff member starting a session at a
  window (a new staff id there, or the first rating after
  HCP_GAMING_SESSION_GAP_MINUTES without any), whatever else is among them;
- clock_boot: a keypad that boots HCP_GAMING_REBOOTS_PER_DAY or more times in
  a day, or whose trusted clock runs ahead of the collector or back between
  two ratings of one boot by more than HCP_GAMING_CLOCK_JUMP_S.

- while_paused: a rating bound to a window (any channel: keypad, window QR,
  paper card ...) whose time falls inside a pause of that window, more than
  HCP_GAMING_PAUSE_GRACE_S after the pause began. The window PC reports each
  pause and resume its keypad acknowledged (table window_pauses,
  sync_server/gaming_pauses.py); a pause never reported as resumed counts
  for at most HCP_GAMING_PAUSE_OPEN_MINUTES.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from zoneinfo import ZoneInfo

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, select, update

from sync_server import audit, db
from sync_server.schema_outbox import gaming_flags, window_pauses

RULES = {
    "staff_entry": _l("Entered by staff, not by a citizen"),
    "burst_no_case": _l("Burst on one keypad with no case started"),
    "outside_hours": _l("Rated outside opening hours"),
    "before_handled": _l("Rated before the case was handled"),
    "one_phone_many": _l("One phone number rating many cases"),
    "identical_text": _l("Identical comments"),
    "top_after_signin": _l("Run of top ratings right after a staff sign-in"),
    "clock_boot": _l("Keypad clock or boot pattern changes"),
    "while_paused": _l("Rated while the window was paused"),
}
SETTINGS = {
    "HCP_GAMING_BURST_COUNT": 5,
    "HCP_GAMING_BURST_MINUTES": 10,
    "HCP_GAMING_OPENING": "08:30-17:30",
    "HCP_GAMING_TOLERANCE_S": 60,
    "HCP_GAMING_PHONE_CASES": 5,
    "HCP_GAMING_SAME_TEXT": 3,
    "HCP_GAMING_TEXT_MIN": 6,
    "HCP_GAMING_TEXT_DAYS": 7,
    "HCP_GAMING_SIGNIN_RUN": 5,
    "HCP_GAMING_SIGNIN_MINUTES": 10,
    "HCP_GAMING_SESSION_GAP_MINUTES": 120,
    "HCP_GAMING_REBOOTS_PER_DAY": 4,
    "HCP_GAMING_CLOCK_JUMP_S": 600,
    "HCP_GAMING_PAUSE_GRACE_S": 30,
    "HCP_GAMING_PAUSE_OPEN_MINUTES": 240,
    "HCP_TIMEZONE": "Asia/Shanghai",
}
RULE_SETTINGS = {
    "staff_entry": (),
    "burst_no_case": ("HCP_GAMING_BURST_COUNT", "HCP_GAMING_BURST_MINUTES"),
    "outside_hours": ("HCP_GAMING_OPENING",),
    "before_handled": ("HCP_GAMING_TOLERANCE_S",),
    "one_phone_many": ("HCP_GAMING_PHONE_CASES",),
    "identical_text": ("HCP_GAMING_SAME_TEXT", "HCP_GAMING_TEXT_MIN", "HCP_GAMING_TEXT_DAYS"),
    "top_after_signin": (
        "HCP_GAMING_SIGNIN_RUN",
        "HCP_GAMING_SIGNIN_MINUTES",
        "HCP_GAMING_SESSION_GAP_MINUTES",
    ),
    "clock_boot": ("HCP_GAMING_REBOOTS_PER_DAY", "HCP_GAMING_CLOCK_JUMP_S"),
    "while_paused": ("HCP_GAMING_PAUSE_GRACE_S", "HCP_GAMING_PAUSE_OPEN_MINUTES"),
}
ON_SITE = ("keypad", "kiosk")
STATES = ("open", "review", "dismissed", "confirmed")
MAX_IDS = 50  # ratings an evidence lists (its count says how many in all)
PUNCTUATION = re.compile(r"[\s\W_]+", re.UNICODE)


class GamingError(ValueError):
    """An action that cannot be taken; str() says why."""


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _workday(day: dt.date) -> bool:
    try:
        import chinese_calendar

        return chinese_calendar.is_workday(day)
    except (ImportError, NotImplementedError):
        return day.weekday() < 5


def _opening(text: str) -> tuple[dt.time, dt.time]:
    start, end = text.split("-")
    return dt.time.fromisoformat(start.strip()), dt.time.fromisoformat(end.strip())


def _finding(rule, key, records, subject=None, **evidence) -> dict:
    ids = list(dict.fromkeys(records))
    return {
        "rule": rule,
        "key": key[:200],
        "record_id": ids[0] if ids else None,
        "subject": subject,
        "records": len(ids),
        "evidence": {"records": ids[:MAX_IDS], **evidence},
    }


def _rows(conn, since: str, until: str) -> list[dict]:
    from sync_server.schema_channels import service_events

    ev = db.evaluations.c
    se = service_events.c
    query = (
        select(
            ev.id,
            ev.device_id,
            ev.seq,
            ev.stars,
            ev.channel,
            ev.case_no,
            ev.window_id,
            ev.staff_id,
            ev.case_staff_id,
            ev.handled_at,
            ev.effective_at,
            ev.rated_at,
            ev.received_at,
            ev.boot_id,
            ev.origin,
            ev.entered_by,
            ev.comment,
            ev.time_source,
            se.handled_at.label("event_handled_at"),
        )  # fmt: skip
        .select_from(
            db.evaluations.outerjoin(
                service_events, and_(se.case_no == ev.case_no, se.service_no == ev.service_no)
            )
        )
        .where(ev.effective_at >= since, ev.effective_at < until)
        .order_by(ev.effective_at, ev.id)
    )
    return [dict(row._mapping) for row in conn.execute(query)]


def _contacts(conn, since: str, until: str) -> list[tuple[str, str, str | None]]:
    ev = db.evaluations.c
    query = (
        # a device's contact is sealed: its keyed hash (`lookup`) is what one number
        # has in common across ratings; a row written before sealing holds the number
        select(func.coalesce(db.contacts.c.lookup, db.contacts.c.contact), ev.id, ev.case_no)
        .select_from(db.contacts.join(db.evaluations, ev.id == db.contacts.c.record_id))
        .where(ev.effective_at >= since, ev.effective_at < until)
        .order_by(ev.effective_at, ev.id)
    )
    return [tuple(row) for row in conn.execute(query)]


# --- the rules ----------------------------------------------------------------------


def staff_entry(rows, settings) -> list[dict]:
    found = []
    for row in rows:
        if row["channel"] != "paper" and row["origin"] != "citizen":
            found.append(_finding("staff_entry", row["id"], [row["id"]], row["channel"],
                                  origin=row["origin"]))  # fmt: skip
        elif (
            row["channel"] == "paper"
            and row["entered_by"]
            and row["entered_by"]
            in (
                row["staff_id"],
                row["case_staff_id"],
            )
        ):
            found.append(_finding("staff_entry", row["id"], [row["id"]], row["entered_by"],
                                  entered_by=row["entered_by"]))  # fmt: skip
    return found


def _by(rows, key):
    groups: dict = {}
    for row in rows:
        if row[key]:
            groups.setdefault(row[key], []).append(row)
    return groups


def burst_no_case(rows, settings) -> list[dict]:
    count, span = settings["HCP_GAMING_BURST_COUNT"], settings["HCP_GAMING_BURST_MINUTES"] * 60
    found = []
    caseless = [r for r in rows if r["channel"] in ON_SITE and not r["case_no"]]
    for device, group in _by(caseless, "device_id").items():
        times = [_time(r["effective_at"]) for r in group]
        start = 0
        while start < len(group):
            end = start
            while end + 1 < len(group) and (times[end + 1] - times[start]).total_seconds() <= span:
                end += 1
            if end - start + 1 >= count:
                burst = group[start : end + 1]
                found.append(
                    _finding(
                        "burst_no_case",
                        f"{device}:{burst[0]['id']}",
                        [r["id"] for r in burst],
                        device,
                        first=burst[0]["effective_at"],
                        last=burst[-1]["effective_at"],
                        stars=sorted({r["stars"] for r in burst}),
                    )  # fmt: skip
                )
                start = end + 1
            else:
                start += 1
    return found


def outside_hours(rows, settings) -> list[dict]:
    if str(settings["HCP_GAMING_OPENING"]).strip() == "always":  # a hall that never closes
        return []
    zone = ZoneInfo(settings["HCP_TIMEZONE"])
    opens, closes = _opening(settings["HCP_GAMING_OPENING"])
    found = []
    for row in rows:
        if row["channel"] not in ON_SITE:
            continue
        local = _time(row["effective_at"]).astimezone(zone)
        workday = _workday(local.date())
        if workday and opens <= local.time() <= closes:
            continue
        found.append(_finding("outside_hours", row["id"], [row["id"]], row["window_id"],
                              local_time=local.strftime("%Y-%m-%d %H:%M:%S"),
                              working_day=workday))  # fmt: skip
    return found


def before_handled(rows, settings) -> list[dict]:
    tolerance = settings["HCP_GAMING_TOLERANCE_S"]
    found = []
    for row in rows:
        handled = row["handled_at"] or row["event_handled_at"]
        if not handled:
            continue
        early = (_time(handled) - _time(row["effective_at"])).total_seconds()
        if early > tolerance:
            found.append(_finding("before_handled", row["id"], [row["id"]], row["case_no"],
                                  rated_at=row["effective_at"], handled_at=handled,
                                  seconds_early=int(early)))  # fmt: skip
    return found


def one_phone_many(contacts, settings) -> list[dict]:
    groups: dict = {}
    for contact, record_id, case_no in contacts:
        groups.setdefault(contact, []).append((record_id, case_no or record_id))
    found = []
    for entries in groups.values():
        cases = {case for _id, case in entries}
        if len(cases) >= settings["HCP_GAMING_PHONE_CASES"]:
            ids = [record_id for record_id, _case in entries]
            found.append(_finding("one_phone_many", f"phone:{ids[0]}", ids, None, cases=len(cases)))
    return found


def normal_text(text: str | None) -> str:
    return PUNCTUATION.sub("", unicodedata.normalize("NFKC", text or "")).lower()


def identical_text(rows, settings) -> list[dict]:
    span = settings["HCP_GAMING_TEXT_DAYS"] * 86400
    groups: dict = {}
    for row in rows:
        text = normal_text(row["comment"])
        if len(text) >= settings["HCP_GAMING_TEXT_MIN"]:
            groups.setdefault((row["window_id"] or "", text), []).append(row)
    found = []
    for (window, _text), group in groups.items():
        times = [_time(r["effective_at"]) for r in group]
        start = 0
        while start < len(group):
            end = start
            while end + 1 < len(group) and (times[end + 1] - times[start]).total_seconds() <= span:
                end += 1
            if end - start + 1 >= settings["HCP_GAMING_SAME_TEXT"]:
                same = group[start : end + 1]
                ids = [r["id"] for r in same]
                found.append(_finding("identical_text", f"text:{ids[0]}", ids, window or None,
                                      text=same[0]["comment"][:60], window=window,
                                      first=same[0]["effective_at"],
                                      last=same[-1]["effective_at"]))  # fmt: skip
                start = end + 1
            else:
                start += 1
    return found


def top_after_signin(rows, settings) -> list[dict]:
    needed = settings["HCP_GAMING_SIGNIN_RUN"]
    span = settings["HCP_GAMING_SIGNIN_MINUTES"] * 60
    gap = settings["HCP_GAMING_SESSION_GAP_MINUTES"] * 60
    found = []
    on_site = [r for r in rows if r["channel"] in ON_SITE and r["staff_id"]]
    for window, group in _by(on_site, "window_id").items():
        previous, session_start, session = None, None, []
        for row in group + [None]:
            at = _time(row["effective_at"]) if row else None
            new_session = (
                row is None
                or previous is None
                or previous["staff_id"] != row["staff_id"]
                or (at - _time(previous["effective_at"])).total_seconds() > gap
            )
            if new_session:
                top = [r for r in session if r["stars"] == 5]
                if len(top) >= needed:
                    ids = [r["id"] for r in top]
                    found.append(_finding("top_after_signin", f"{window}:{ids[0]}", ids,
                                          top[0]["staff_id"], window=window,
                                          first=top[0]["effective_at"],
                                          last=top[-1]["effective_at"],
                                          ratings_in_span=len(session)))  # fmt: skip
                session_start, session = at, []
            if row is not None and (at - session_start).total_seconds() <= span:
                session.append(row)
            previous = row
    return found


def clock_boot(rows, settings) -> list[dict]:
    zone = ZoneInfo(settings["HCP_TIMEZONE"])
    jump = settings["HCP_GAMING_CLOCK_JUMP_S"]
    devices = _by([r for r in rows if r["channel"] in ON_SITE], "device_id")
    found = []
    for device, group in devices.items():
        days: dict = {}
        for row in group:
            day = _time(row["effective_at"]).astimezone(zone).date().isoformat()
            days.setdefault(day, []).append(row)
        for day, day_rows in sorted(days.items()):
            boots = {r["boot_id"] for r in day_rows if r["boot_id"]}
            ahead = [
                r["id"]
                for r in day_rows
                if r["time_source"] == "device"
                and (_time(r["rated_at"]) - _time(r["received_at"])).total_seconds() > jump
            ]
            back = []
            ordered = sorted((r for r in day_rows if r["seq"] is not None), key=lambda r: r["seq"])
            for before, after in zip(ordered, ordered[1:], strict=False):
                same_boot = before["boot_id"] == after["boot_id"]
                step = (_time(after["rated_at"]) - _time(before["rated_at"])).total_seconds()
                if same_boot and step < -jump:
                    back.append(after["id"])
            if len(boots) >= settings["HCP_GAMING_REBOOTS_PER_DAY"] or ahead or back:
                ids = [r["id"] for r in day_rows] if not (ahead or back) else ahead + back
                found.append(_finding("clock_boot", f"{device}:{day}", ids, device, day=day,
                                      boots=len(boots), clock_ahead=ahead[:MAX_IDS],
                                      clock_back=back[:MAX_IDS]))  # fmt: skip
    return found


def _pauses(conn, since: str, until: str, settings) -> dict[str, list[tuple]]:
    """{window: [(paused_at, resumed_at or None)]} of the pauses that may
    overlap [since, until), oldest first."""
    longest = dt.timedelta(minutes=float(settings["HCP_GAMING_PAUSE_OPEN_MINUTES"]))
    start = (_time(since) - longest).strftime("%Y-%m-%dT%H:%M:%SZ")
    p = window_pauses.c
    query = (
        select(p.window_id, p.paused_at, p.resumed_at)
        .where(p.paused_at >= start, p.paused_at < until)
        .order_by(p.window_id, p.paused_at)
    )
    found: dict[str, list[tuple]] = {}
    for window, paused, resumed in conn.execute(query):
        found.setdefault(window, []).append((paused, resumed))
    return found


def while_paused(rows, pauses, settings) -> list[dict]:
    """Ratings of a window timed inside one of its pauses (past the grace)."""
    grace = float(settings["HCP_GAMING_PAUSE_GRACE_S"])
    longest = float(settings["HCP_GAMING_PAUSE_OPEN_MINUTES"]) * 60
    found = []
    for row in rows:
        intervals = pauses.get(row["window_id"]) if row["window_id"] else None
        if not intervals:
            continue
        at = _time(row["effective_at"])
        for paused, resumed in intervals:
            start = _time(paused)
            into = (at - start).total_seconds()
            end = (_time(resumed) - start).total_seconds() if resumed else longest
            if grace < into < end:
                found.append(_finding("while_paused", row["id"], [row["id"]], row["window_id"],
                                      window=row["window_id"], channel=row["channel"],
                                      rated_at=row["effective_at"], paused_at=paused,
                                      resumed_at=resumed,
                                      seconds_into_pause=int(into)))  # fmt: skip
                break
    return found


def scan(conn, since: str, until: str, settings: dict | None = None) -> list[dict]:
    """Every rule over the ratings whose time is in [since, until) (UTC texts)."""
    settings = SETTINGS | (settings or {})
    rows = _rows(conn, since, until)
    found = []
    for rule in (staff_entry, burst_no_case, outside_hours, before_handled, identical_text,
                 top_after_signin, clock_boot):  # fmt: skip
        found.extend(rule(rows, settings))
    found.extend(one_phone_many(_contacts(conn, since, until), settings))
    found.extend(while_paused(rows, _pauses(conn, since, until, settings), settings))
    return found


def store(engine, findings: list[dict]) -> int:
    """Keep new findings as open flags (a finding flagged before is left as
    it is, whatever a supervisor did with it); returns how many are new."""
    if not findings:
        return 0
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    now = db.utc_now()
    rows = [
        {**f, "evidence": json.dumps(f["evidence"], ensure_ascii=False), "flagged_at": now,
         "state": "open"}
        for f in findings
    ]  # fmt: skip
    with engine.begin() as conn:
        before = conn.execute(select(gaming_flags.c.id)).all()
        conn.execute(
            insert(gaming_flags).on_conflict_do_nothing(index_elements=["rule", "key"]), rows
        )
        after = conn.execute(select(gaming_flags.c.id)).all()
    return len(after) - len(before)


def run(engine, since: str, until: str, settings: dict | None = None) -> int:
    with engine.connect() as conn:
        findings = scan(conn, since, until, settings)
    return store(engine, findings)


def run_recent(engine, days: float = 2, settings: dict | None = None) -> int:
    """Scan the last `days` days up to now (a scheduled job, the page's scan);
    returns how many new flags were kept."""
    until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    since = until - dt.timedelta(days=days)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return run(engine, since.strftime(fmt), until.strftime(fmt), settings)


# --- reading and acting ----------------------------------------------------------------


def flags(conn, state: str | None = None, rule: str | None = None, limit: int = 200) -> list[dict]:
    g = gaming_flags.c
    query = select(gaming_flags).order_by(g.id.desc()).limit(limit)
    if state:
        query = query.where(g.state == state)
    if rule:
        query = query.where(g.rule == rule)
    return [{**row._mapping, "evidence": json.loads(row.evidence)} for row in conn.execute(query)]


def get(conn, flag_id: int) -> dict | None:
    row = conn.execute(select(gaming_flags).where(gaming_flags.c.id == flag_id)).first()
    return {**row._mapping, "evidence": json.loads(row.evidence)} if row else None


ACTIONS = {  # action -> (states it may follow, state it leads to)
    "review": (("open",), "review"),
    "dismiss": (("open", "review"), "dismissed"),
    "confirm": (("review",), "confirmed"),
}


def act(engine, flag_id: int, action: str, note: str, username: str) -> dict:
    """A supervisor's step on a flag, with a note, audited. Confirming a
    review excludes the named ratings from the figures (they stay stored)."""
    from flask_babel import gettext as _

    if action not in ACTIONS:
        raise GamingError(_("action: must be review, dismiss or confirm"))
    note = (note or "").strip()
    if not note or len(note) > 1000:
        raise GamingError(_("note: give the reason (1 to 1000 characters)"))
    allowed, to_state = ACTIONS[action]
    with engine.begin() as conn:
        flag = get(conn, flag_id)
        if flag is None:
            raise LookupError(flag_id)
        if flag["state"] not in allowed:
            raise GamingError(_("action: not possible on a flag that is %(state)s",
                                state=flag["state"]))  # fmt: skip
        conn.execute(
            update(gaming_flags)
            .where(gaming_flags.c.id == flag_id)
            .values(state=to_state, note=note, handled_by=username, handled_at=db.utc_now())
        )
        excluded = 0
        if action == "confirm":
            from sync_server import cases_workflow, figures

            records = flag["evidence"]["records"]
            excluded = figures.set_excluded(conn, records, True)
            # their 差评 cases end as voided, each with a step, like a decided appeal's
            cases_workflow.void_cases_of(conn, records, f"gaming flag {flag_id} confirmed")
        audit.record(
            conn,
            f"gaming.{action}",
            f"gaming_flag:{flag_id}",
            {"state": flag["state"]},
            {"state": to_state, "note": note, "excluded": excluded},
        )
    return {"state": to_state, "excluded": excluded}
