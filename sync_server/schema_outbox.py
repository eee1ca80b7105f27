"""Tables of reporting upward: the outbox to the provincial platform (issue 13).

They live in db.metadata (db.py imports this module), so the migrations test
compares them with migrations/versions/0011_outbox.py.

- `outbox`: one row per accepted service event and per stored rating,
  written in the transaction that stores it. Its id is the order the
  province gets them in. The payload is built once, at the first attempt,
  and kept: every later attempt sends the same bytes, so a time never
  changes on the way up.
- `outbox_sender`: what the sender last heard from the province (one row a
  sender), shown on the outbox page: a garbage answer or an expired
  credential is a state someone can read, not a log line.
- `window_pauses`: the intervals a window's keypad was paused, as the
  window PC (hcp/window.py) reports each acknowledged /pause and /resume;
  the gaming rule `while_paused` reads them.
- `gaming_flags`: evidence of gaming (sync_server/gaming.py), one row per
  rule and finding, for a supervisor; it never changes a rating.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text

from sync_server.db import metadata

# states of an outbox row
PENDING = "pending"  # to send (again): waiting for its next attempt
ACKED = "acked"  # the province acknowledged it
DEAD = "dead"  # the province refused it: its reason is kept for an admin
UNMAPPED = "unmapped"  # our record cannot be put in the province's shape (reason kept)
NOT_REPORTED = "skipped"  # by rule not reported (a repeat rating of a rated event)
HANDLED = "handled"  # a dead letter an admin marked handled (audited)
# a 差评 whose rater gave no reason (reason_owed): the province takes no 差评
# without one, so it waits for the call-back (or the SMS follow-up) to bring it
HELD = "held"
OVERDUE = "overdue"  # held longer than HCP_OUTBOX_REASON_WAIT_DAYS: still waiting, shown
STATES = (PENDING, HELD, OVERDUE, ACKED, DEAD, UNMAPPED, NOT_REPORTED, HANDLED)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),  # event | rating
    Column("ref", String(140), nullable=False),  # event: case_no/service_no; rating: its id
    Column("case_no", String(64)),
    Column("service_no", String(64)),
    Column("stored_at", String(32), nullable=False),  # UTC, when the collector stored it
    Column("state", String(8), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_try_at", String(32)),  # UTC; NULL: at once
    Column("last_error", Text),  # the last failed attempt, for the page
    Column("payload", Text),  # JSON as sent, frozen at the first attempt
    Column("acked_at", String(32)),  # UTC, the first acknowledgement
    Column("province_ref", String(64)),  # the province's receipt number
    Column("flags", Text),  # what the province noted (late, ...), JSON list
    Column("reason", Text),  # why it is dead, unmapped or not reported
    Column("resends", Integer, nullable=False, default=0),  # re-sent on demand
    Column("handled_by", String(80)),
    Column("handled_at", String(32)),
    Index("ux_outbox_ref", "kind", "ref", unique=True),
    Index("ix_outbox_state", "state", "id"),
    Index("ix_outbox_case", "case_no", "service_no"),
    Index("ix_outbox_stored", "stored_at"),
)

outbox_sender = Table(
    "outbox_sender",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("state", String(16), nullable=False),  # ok | unreachable | garbage | credential | error
    Column("detail", Text),
    Column("at", String(32), nullable=False),  # UTC of the last attempt
    Column("last_ack_at", String(32)),
    Column("holder", String(80)),  # the process that holds the lease to send
    Column("lease_until", String(32)),
)

gaming_flags = Table(
    "gaming_flags",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(32), nullable=False),
    Column("key", String(200), nullable=False),  # what the finding is about, stable across runs
    Column("record_id", String(100)),  # the rating it names first, where there is one
    Column("subject", String(100)),  # the device, window, staff member ... it is about
    Column("evidence", Text, nullable=False),  # JSON: the rule's evidence, ids and figures
    Column("records", Integer, nullable=False),  # how many ratings the evidence names
    Column("flagged_at", String(32), nullable=False),
    Column("state", String(12), nullable=False),  # open | dismissed | review
    Column("note", Text),
    Column("handled_by", String(80)),
    Column("handled_at", String(32)),
    Index("ux_gaming_flags_key", "rule", "key", unique=True),
    Index("ix_gaming_flags_state", "state", "flagged_at"),
)

window_pauses = Table(
    "window_pauses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("window_id", String(64), nullable=False),
    Column("paused_at", String(32), nullable=False),  # UTC, when the keypad acked the pause
    Column("resumed_at", String(32)),  # UTC; NULL: still paused (as far as we know)
    Column("reported_by", String(80), nullable=False),  # the token's actor
    Column("received_at", String(32), nullable=False),
    Index("ux_window_pauses_start", "window_id", "paused_at", unique=True),
)
