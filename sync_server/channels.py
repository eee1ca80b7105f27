"""Service events and one rating per service event, across channels (issue 10).

A feature module (sync_server/features.py): `init_app` registers the service
event API (sync_server/service_events.py), `before_store` ties every new
rating to its service event in the transaction that stores it.

The rules (docs/service-events.md):

- the first rating of a (case_no, service_no) to reach the store counts: the
  event's `rating_id` is bound to it; any later rating of the event, from any
  channel, is a repeat (`evaluations.repeat_of` = the id that counts) and
  counts nowhere; nothing is ever overwritten;
- an appended rating (attempt 2) is a new record linked to the first, allowed
  once (the event's `appended_id`); a second one is a repeat of the first
  appended rating;
- a rating is accepted up to HCP_RATING_PERIOD_WORKING_DAYS working days
  after the local day the service was handled (`period_end`); where the rater
  is present (web, QR, SMS) a rating outside that is refused
  (`check_rateable`), a device record or a paper card is stored and tied
  with `late` set in `event_ratings`, never refused (a device needs its ack).

The citizen channels call `find_event`, `check_rateable` and
`store_channel_rating`; they never write these tables themselves.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context
from flask_babel import lazy_gettext as _l
from sqlalchemy import false, select, text

from protocols import record
from protocols.levels import is_bad
from sync_server import db, features, workdays
from sync_server.schema_channels import service_events

DEFAULTS = {
    "HCP_RATING_PERIOD_WORKING_DAYS": 5,
    "HCP_TIMEZONE": "Asia/Shanghai",
    # registration: how far ahead of the collector's clock handled_at may be,
    # and how old it may be (never backdated)
    "HCP_EVENT_CLOCK_SKEW_S": 300,
    "HCP_EVENT_MAX_AGE_HOURS": 24,
    "HCP_EVENT_BATCH_MAX": 500,
}
# how long a rating of a case not registered waits for its event
UNBOUND_DAYS = 31
# what init_app read from the app, for callers without an app context (the
# MQTT ingest runs beside the app in `hcp collector serve`)
_settings = dict(DEFAULTS)

# channels the collector serves itself; where the rater is present (all but
# paper) a repeat or a rating out of its period is refused, not stored
SERVED_CHANNELS = ("web", "qr_window", "qr_case", "sms", "paper")
PRESENT_CHANNELS = ("web", "qr_window", "qr_case", "sms")
# these rate one known service event: a case number is required
CASE_CHANNELS = ("web", "qr_case", "sms")
# what a served channel may give; the collector sets the rest
RATING_FIELDS = (
    "channel",
    "stars",
    "tags",
    "content_version",
    "comment",
    "case_no",
    "service_no",
    "window_id",
    "staff_id",
    "org_id",
    "client",
    "attempt",
    "follows",
    "rated_at",
    "entered_by",
    "entered_at",
    "card_date",
)
# a whole record made by the channel may carry these too: the id must be in
# the channel's namespace, clock and origin what the collector would set, and
# the fields of the service event the event's own
RECORD_FIELDS = ("id", "clock", "origin")
EVENT_FIELDS = {
    "item_code": "item_code",
    "handled_at": "handled_at",
    "case_staff_id": "staff_id",
    "case_org_id": "unit_id",
}

REFUSALS = {
    "already_rated": _l("Already rated"),
    "period_over": _l(
        "The rating period is over: a service can be rated up to %(days)s working days "
        "after the day it was handled"
    ),
    "not_rated": _l("There is no rating of this service to add to yet"),
}


class Refused(ValueError):
    """A rating a served channel may not store; str() is "<field>: <message>".
    `key` is the REFUSALS key when the event's state refused it."""

    def __init__(self, field: str, message: str, key: str | None = None):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.key = key


# the bounds of each whole-number setting (a wrong one stops the collector at start)
BOUNDS = {
    "HCP_RATING_PERIOD_WORKING_DAYS": (0, 60),
    "HCP_EVENT_CLOCK_SKEW_S": (0, 3600),
    "HCP_EVENT_MAX_AGE_HOURS": (0, 24 * 31),
    "HCP_EVENT_BATCH_MAX": (1, 10_000),
}


def init_app(app) -> None:
    for name, value in DEFAULTS.items():
        app.config.setdefault(name, value)
    for name, (low, high) in BOUNDS.items():
        value = app.config[name]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{name}: must be a whole number {low}..{high}, got {value!r}")
    _settings.update({name: app.config[name] for name in DEFAULTS})
    from sync_server import service_events

    service_events.init_app(app)


def setting(name: str):
    """A setting of this feature: the app's when there is one, else the last
    app's (or the default)."""
    if has_app_context():
        return current_app.config.get(name, _settings[name])
    return _settings[name]


# --- times and the rating period ---------------------------------------------------


def parse_utc(text: str) -> dt.datetime:
    """A stored UTC time (YYYY-MM-DDTHH:MM:SS[.ffffff]Z) as an aware datetime."""
    return dt.datetime.fromisoformat(text.rstrip("Z")).replace(tzinfo=dt.UTC)


def utc_text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_day(moment: dt.datetime | str) -> dt.date:
    """The local calendar day (HCP_TIMEZONE) of a UTC moment."""
    if isinstance(moment, str):
        moment = parse_utc(moment)
    return moment.astimezone(ZoneInfo(setting("HCP_TIMEZONE"))).date()


def _calendar(conn):
    """The holiday calendar with the admin's entries. (Until the deadlines
    feature has its calendar table, the published schedules only.)"""
    try:
        return workdays.Calendar(conn)
    except ImportError:
        return workdays.Calendar(None)


class Periods:
    """The last day a rating of an event is accepted, with one read of the
    holiday calendar for any number of events."""

    def __init__(self, conn=None):
        self.calendar = _calendar(conn)
        self.days = int(setting("HCP_RATING_PERIOD_WORKING_DAYS"))
        self._cache: dict[str, dt.date] = {}
        self._days: dict[str, dt.date] = {}

    def end(self, handled_at: str) -> dt.date:
        end = self._cache.get(handled_at)
        if end is None:
            day = local_day(handled_at)
            end = self._cache[handled_at] = self.calendar.add_working_days(day, self.days)
        return end

    def day(self, moment: str) -> dt.date:
        """local_day(), remembered for the batch (ratings of one batch share times)."""
        day = self._days.get(moment)
        if day is None:
            day = self._days[moment] = local_day(moment)
        return day


def period_end(conn, event: dict) -> dt.date:
    """The last local day a rating of `event` is accepted: the handled day plus
    HCP_RATING_PERIOD_WORKING_DAYS working days (holidays and adjusted working
    weekends from sync_server/workdays.py)."""
    return Periods(conn).end(event["handled_at"])


# --- the API the citizen channels call ---------------------------------------------


def event_dict(row) -> dict:
    """A service_events row as a dict."""
    return dict(row._mapping)


def lock_events(conn) -> None:
    """Make what this transaction reads of service events next the truth until
    it commits. PostgreSQL: the reads lock their rows (FOR UPDATE) and wait
    for a transaction that holds them. SQLite reads outside a transaction
    until the first write (Python's sqlite3), so a read could see an event
    unrated that another connection has bound and not yet committed: an empty
    write first takes the database's one write lock, waiting for that
    transaction, and every read after it sees its result."""
    if conn.dialect.name == "sqlite":
        conn.execute(
            service_events.update().where(false()).values(rating_id=service_events.c.rating_id)
        )


# PostgreSQL advisory locks of (case_no, service_no) pairs: the two-key space,
# apart from the ingest's per-device locks (one key)
CASE_LOCK_CLASS = 10


def lock_cases(conn, keys) -> None:
    """Serialise everything that decides about these (case_no, service_no)
    pairs, registered or not yet, until the transaction ends: a rating of an
    event not registered yet and the event's registration never decide at
    once (PostgreSQL; SQLite: `lock_events`). Locks are taken in one order."""
    if conn.dialect.name != "postgresql":
        lock_events(conn)
        return
    names = sorted({f"{case_no}\x1f{service_no}" for case_no, service_no in keys})
    if names:
        conn.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(:class, hashtext(k))) FROM "
                "(SELECT unnest(CAST(:names AS text[])) AS k ORDER BY 1) AS ordered"
            ),
            {"class": CASE_LOCK_CLASS, "names": names},
        )


def find_events(conn, case_no: str, lock: bool = False) -> list[dict]:
    """Every service event of a case, oldest first."""
    if not isinstance(case_no, str) or not case_no:
        return []
    if lock:
        lock_events(conn)
    query = (
        select(service_events)
        .where(service_events.c.case_no == case_no)
        .order_by(service_events.c.handled_at, service_events.c.id)
    )
    if lock:
        query = query.with_for_update()
    return [event_dict(row) for row in conn.execute(query)]


def find_event(conn, case_no: str, service_no: str | None = None, lock: bool = False):
    """The service event (case_no, service_no) as a dict, or None. Without
    service_no: the case's event when it has one only, else the latest one
    handled not yet rated (else the latest). `lock`: held to the end of the
    transaction (`lock_events`)."""
    if not isinstance(case_no, str) or not case_no:
        return None
    if service_no is not None:
        e = service_events.c
        query = select(service_events).where(e.case_no == case_no, e.service_no == service_no)
        if lock:
            lock_events(conn)
            query = query.with_for_update()
        row = conn.execute(query).first()
        return event_dict(row) if row else None
    events = find_events(conn, case_no, lock)
    if not events:
        return None
    unrated = [event for event in events if event["rating_id"] is None]
    return (unrated or events)[-1]


def check_rateable(conn, event: dict, now_utc, attempt: int = 1) -> str | None:
    """None when `event` may be rated now, else the REFUSALS key:
    "already_rated" (已评价), "period_over" (评价期已过…) or, for an
    appended rating, "not_rated" (nothing to add to)."""
    if attempt == 2:
        if event.get("appended_id"):
            return "already_rated"
        if not event.get("rating_id"):
            return "not_rated"
    elif event.get("rating_id"):
        return "already_rated"
    if isinstance(now_utc, str):
        now_utc = parse_utc(now_utc)
    if local_day(now_utc) > period_end(conn, event):
        return "period_over"
    return None


def refusal_text(key: str) -> str:
    """The user-facing text of a check_rateable key, in the UI language."""
    return str(REFUSALS[key]) % {"days": setting("HCP_RATING_PERIOD_WORKING_DAYS")}


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A ULID: 48 bits of milliseconds and 80 random bits, 26 characters of
    Crockford base32, sorting by time."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _given(rating) -> dict:
    if not isinstance(rating, dict):
        raise Refused("rating", "must be an object")
    for key in rating:
        if key not in RATING_FIELDS + RECORD_FIELDS + tuple(EVENT_FIELDS):
            raise Refused(str(key)[:40], "unknown field")
    channel = rating.get("channel")
    if channel not in SERVED_CHANNELS:
        raise Refused("channel", "must be one of " + ", ".join(SERVED_CHANNELS))
    given = {k: v for k, v in rating.items() if v is not None}
    comment = given.get("comment")
    if isinstance(comment, str):
        given["comment"] = comment.strip()
        if not given["comment"]:
            del given["comment"]
    if given.get("tags") == []:
        del given["tags"]
    return given


def _check_tags(conn, rec: dict) -> None:
    from sync_server import tags as tag_table

    if not rec.get("tags"):
        rec.pop("content_version", None)
        return
    version = tag_table.in_force(conn)
    if version is None:
        raise Refused("tags", "no content tags are in force")
    if rec.setdefault("content_version", version) != version:
        raise Refused("content_version", f"{rec['content_version']!r} is not the version in force")
    known = {tag["code"]: tag["level"] for tag in tag_table.tags_of(conn, version)}
    for code in rec["tags"]:
        if code not in known:
            raise Refused("tags", f"unknown tag {code!r} in version {version}")
        if known[code] != rec["stars"]:
            raise Refused("tags", f"tag {code!r} is not a tag of level {rec['stars']}")


def _bind_event(conn, rec: dict, now: dt.datetime) -> None:
    """Fill the record from its service event, refusing what the rater may not do."""
    channel = rec["channel"]
    if rec.get("case_no") is None:
        if channel in CASE_CHANNELS:
            raise Refused("case_no", "is required on a " + channel + " rating")
        if rec.get("service_no") is not None:
            raise Refused("service_no", "only with case_no")
        return
    # the case's lock first, then the event's row: the order the ingest takes them in
    service_no = rec.get("service_no")
    if service_no is None:
        found = find_event(conn, rec["case_no"])
        service_no = found["service_no"] if found else None
    event = None
    if service_no is not None:
        lock_cases(conn, [(rec["case_no"], service_no)])
        event = find_event(conn, rec["case_no"], service_no, lock=True)
    if event is None:
        raise Refused("case_no", "no service event with this case number")
    for field, source in (("window_id", "window_id"), *EVENT_FIELDS.items()):
        given, known = rec.get(field), event[source]
        if given is not None and known is not None and given != known:
            raise Refused(field, f"not the {source} of case {event['case_no']}")
    if channel in PRESENT_CHANNELS:
        key = check_rateable(conn, event, now, rec.get("attempt", 1))
        if key is not None:
            raise Refused("case_no", refusal_text(key), key)
    rec["service_no"] = event["service_no"]
    for field, source in (("window_id", "window_id"), *EVENT_FIELDS.items()):
        if event[source] is not None:
            rec[field] = event[source]
    if rec.get("attempt") == 2 and rec.get("follows") is None and event["rating_id"]:
        rec["follows"] = event["rating_id"]


def store_channel_rating(conn, engine, rating: dict) -> str:
    """Check and store a rating from a channel the collector serves (web |
    qr_window | qr_case | sms | paper) in the caller's transaction; returns
    its id, `<channel>/<ULID>` unless the channel gave its own `<channel>/...`
    id. Raises Refused naming the field; the caller must then roll its
    transaction back (nothing of this rating is kept).

    The record rules of protocols/record.py apply (stars 1..5, never a
    default; comment at most 500 characters; no control characters), tags
    must be of the version in force and of the level given, a 差评 needs a
    reason (a tag or a comment; by SMS the reason is asked for after, so it
    is stored with `reason_owed`), and a rating where the rater is present is
    refused once its event is rated ("已评价") or its period is over."""
    from sync_server.ingest import evaluation_row

    given = _given(rating)
    channel = given["channel"]
    now = dt.datetime.now(dt.UTC)
    received_at = db.utc_now()
    rec = {
        "id": f"{channel}/{new_ulid()}",
        "rated_at": utc_text(now),
        "clock": "ntp",
        "origin": "staff_entry" if channel == record.PAPER else "citizen",
        "attempt": 1,
        **given,
    }
    if rec.get("tags") and not rec.get("content_version"):
        from sync_server import tags as tag_table

        rec["content_version"] = tag_table.in_force(conn)  # the version shown now
    try:
        record.validate(rec)
    except record.RecordError as exc:
        raise Refused(exc.field, exc.problem) from None
    if rec["clock"] != "ntp":
        raise Refused("clock", "must be ntp (the collector's own clock)")
    ev = db.evaluations.c
    if conn.execute(select(ev.id).where(ev.id == rec["id"])).first() is not None:
        raise Refused("id", "a rating with this id is stored already")
    _check_tags(conn, rec)
    if is_bad(rec["stars"]) and not rec.get("tags") and not rec.get("comment"):
        if channel != "sms":
            raise Refused("tags", "a 差评 needs a reason: at least one tag or a comment")
    _bind_event(conn, rec, now)
    row = evaluation_row(rec, received_at, {})
    features.store_evaluations(conn, engine, [row])
    if row.get("repeat_of") and channel in PRESENT_CHANNELS:  # a race the lock should prevent
        raise Refused("case_no", refusal_text("already_rated"), "already_rated")
    return rec["id"]


# --- before_store: one rating per service event (sync_server/channels_binding.py) ---


def before_store(conn, rows: list[dict]) -> None:
    """Tie each new rating of a service event to it (features.store_evaluations
    calls this in the storing transaction): see channels_binding.before_store."""
    from sync_server import channels_binding

    channels_binding.before_store(conn, rows)


def bind_earlier(conn, event: dict) -> None:
    """A service event just registered binds the ratings that came before it."""
    from sync_server import channels_binding

    channels_binding.bind_earlier(conn, event)
