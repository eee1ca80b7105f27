"""The citizen channels' one way to service events and the rating store.

Every rating a citizen makes on a QR page, the web portal, by SMS or on a
paper card goes through sync_server/channels.py: `find_event`,
`check_rateable` (one rating per service event, the rating period) and
`store_channel_rating` (the record rules, then `features.store_evaluations`).
This module only shapes what the channels give it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from sync_server import channels
from sync_server.schema_channels import service_events

Refused = channels.Refused
refusal_text = channels.refusal_text
find_event = channels.find_event


def utc_second(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_by_id(conn, event_id: int) -> dict | None:
    row = conn.execute(select(service_events).where(service_events.c.id == event_id)).first()
    return dict(row._mapping) if row else None


def window_events_since(conn, window_id: str, since_utc: str) -> int:
    """How many service events the window handled since `since_utc`."""
    e = service_events.c
    return conn.execute(
        select(func.count()).where(e.window_id == window_id, e.handled_at >= since_utc)
    ).scalar()


def last_day(conn, event: dict) -> dt.date:
    """The last local day a rating of `event` is taken."""
    return channels.period_end(conn, event)


def check_rateable(conn, event: dict, attempt: int = 1) -> str | None:
    """None when `event` may be rated now, else a refusal key."""
    return channels.check_rateable(conn, event, utc_second(), attempt)


def store(conn, engine, rating: dict) -> str:
    """Store one rating (the caller's transaction, rolled back on Refused);
    its id. `rating` holds what the rater gave and where: the channel fills
    in the service event's own fields."""
    allowed = set(channels.RATING_FIELDS) | set(getattr(channels, "RECORD_FIELDS", ()))
    given = {k: v for k, v in rating.items() if k in allowed and v not in (None, "", [])}
    return channels.store_channel_rating(conn, engine, given)
