"""Tables of service events and every rating channel (issue 10).

They live in db.metadata (db.py imports this module), so the migrations test
compares them with migrations/versions/0009_channels.py.

A service event is one piece of business handled at a window, registered by
the business system as it happens. Ratings bind to it by (case_no,
service_no); the first rating of an event counts, a later one is stored with
`evaluations.repeat_of` set and counts nowhere (docs/service-events.md).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, Integer, String, Table, false

from sync_server.db import metadata

service_events = Table(
    "service_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_no", String(64), nullable=False),  # 办件编号
    Column("service_no", String(64), nullable=False),  # 服务编号 (one case, several services)
    Column("item_code", String(64), nullable=False),  # 事项实施编码
    Column("unit_id", String(64), nullable=False),  # org_units.id responsible
    Column("window_id", String(64)),
    Column("staff_id", String(64)),
    Column("handled_at", String(20), nullable=False),  # UTC, YYYY-MM-DDTHH:MM:SSZ
    Column("registered_at", String(32), nullable=False),  # UTC, when the collector got it
    Column("source", String(16), nullable=False),  # api | window_pc | clerk | demo
    Column("registered_by", String(80)),  # the user or token that registered it
    Column("rating_id", String(100)),  # the rating that counts for it, once rated
    # the appended rating (attempt 2) that counts, once given
    Column("appended_id", String(100)),
    # the applicant's phone, kept by the citizen feature (encrypted, apart);
    # this is only its reference there, never the number
    Column("phone_ref", String(64)),
    Index("ux_service_events_case", "case_no", "service_no", unique=True),
    Index("ix_service_events_window", "window_id", "handled_at"),
    Index("ix_service_events_unit", "unit_id", "handled_at"),
)

# Every rating tied to a service event, and how: the one that counts (first),
# the appended one that counts (appended) or a repeat; `late` when it was made
# after the event's rating period (a device record: never refused, see the docs).
event_ratings = Table(
    "event_ratings",
    metadata,
    Column("rating_id", String(100), primary_key=True),
    Column("event_id", Integer, nullable=False),
    Column("role", String(8), nullable=False),  # first | appended | repeat
    Column("late", Boolean, nullable=False, default=False, server_default=false()),
    Column("at", String(32), nullable=False),  # UTC, when it was tied
    Index("ix_event_ratings_event", "event_id"),
)

# Ratings that name a case and service no event was registered for when they
# were stored (a keypad's record arriving before the business system
# registered the event): the first of a (case_no, service_no) counts, later
# ones are repeats of it (repeat_of), and the event binds them when it is
# registered. Rows older than UNBOUND_DAYS are deleted.
unbound_ratings = Table(
    "unbound_ratings",
    metadata,
    Column("rating_id", String(100), primary_key=True),
    Column("case_no", String(64), nullable=False),
    Column("service_no", String(64), nullable=False),
    Column("received_at", String(32), nullable=False),  # UTC, when it was stored
    Column("repeat_of", String(100)),
    Index("ix_unbound_ratings_case", "case_no", "service_no"),
    Index("ix_unbound_ratings_received", "received_at"),
)
