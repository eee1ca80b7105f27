"""Tables of the citizen channels: QR pages, web portal, SMS, paper cards, phones (issue 10).

They live in db.metadata (db.py imports this module), so the migrations test
compares them with migrations/versions/0012_citizen.py.

No table here holds a phone number in clear: `sealed` columns are SM4 with a
MAC (sync_server/phones.py), `lookup` columns a keyed hash of the number.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, Integer, String, Table, Text

from sync_server.db import metadata

# the number a rater left (with consent) beside a rating of a citizen channel
rater_phones = Table(
    "rater_phones",
    metadata,
    Column("record_id", String(100), primary_key=True),
    Column("sealed", Text, nullable=False),
    Column("received_at", String(32), nullable=False),
)

# the applicant's phone the business system gave with a service event: the
# SMS invitation goes to it, the web portal checks its last four digits
event_phones = Table(
    "event_phones",
    metadata,
    Column("case_no", String(64), primary_key=True),
    Column("service_no", String(64), primary_key=True),
    Column("sealed", Text, nullable=False),
    Column("lookup", String(64), nullable=False),
    Column("ref", String(32), nullable=False),  # service_events.phone_ref
    Column("registered_at", String(32), nullable=False),
    Index("ix_event_phones_lookup", "lookup"),
    Index("ux_event_phones_ref", "ref", unique=True),
)

# failed checks on the web portal, for the limits per case and per address
portal_failures = Table(
    "portal_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_no", String(64), nullable=False),
    Column("address", String(64), nullable=False),
    Column("at", String(32), nullable=False),
    Index("ix_portal_failures_case", "case_no", "at"),
    Index("ix_portal_failures_address", "address", "at"),
)

# one SMS conversation per service event with a phone: invited, rated, and
# for a 差评 the reason asked and received
sms_conversations = Table(
    "sms_conversations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_no", String(64), nullable=False),
    Column("service_no", String(64), nullable=False),
    Column("lookup", String(64), nullable=False),
    Column("sealed", Text, nullable=False),
    # queued, sending, invited, reason_asked, done
    Column("state", String(16), nullable=False),
    Column("invited_at", String(32)),
    Column("closes_on", String(10)),  # the last local day a rating is taken
    Column("record_id", String(100)),
    Column("updated_at", String(32), nullable=False),
    Index("ux_sms_conversations_event", "case_no", "service_no", unique=True),
    Index("ix_sms_conversations_lookup", "lookup", "id"),
)

# every SMS in and out, with what became of an inbound one (nothing is
# dropped silently: garbage is kept with its outcome)
sms_messages = Table(
    "sms_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation_id", Integer),
    Column("lookup", String(64), nullable=False),
    Column("direction", String(3), nullable=False),  # in | out
    Column("text", Text, nullable=False),
    Column("outcome", String(32)),
    Column("at", String(32), nullable=False),
    Index("ix_sms_messages_conversation", "conversation_id"),
)

# the reason a rater sent by SMS after a 差评 (the rating itself is never
# changed: the reason goes to the 差评's case)
sms_reasons = Table(
    "sms_reasons",
    metadata,
    Column("record_id", String(100), primary_key=True),
    Column("text", Text, nullable=False),
    Column("received_at", String(32), nullable=False),
)

# paper card numbers handed out per window: <window>-<serial>
paper_serials = Table(
    "paper_serials",
    metadata,
    Column("window_id", String(64), primary_key=True),
    Column("last", Integer, nullable=False),
    Column("updated_by", String(64)),
    Column("updated_at", String(32), nullable=False),
)

# paper cards typed in: a card number is entered once; `late` when it was
# entered more than HCP_PAPER_LATE_WORKING_DAYS working days after its date
paper_entries = Table(
    "paper_entries",
    metadata,
    Column("card_no", String(80), primary_key=True),
    Column("record_id", String(100), nullable=False),
    Column("window_id", String(64), nullable=False),
    Column("late", Boolean, nullable=False),
    Column("entered_by", String(64), nullable=False),
    Column("entered_at", String(32), nullable=False),
    Index("ix_paper_entries_record", "record_id"),
)

# rating forms already sent (the token each form carries): a form sent twice
# (a reload, a double tap) stores one rating
used_forms = Table(
    "used_forms",
    metadata,
    Column("token", String(64), primary_key=True),
    Column("record_id", String(100), nullable=False),
    Column("at", String(32), nullable=False),
    # a window QR rating without a service event: where from, for the limit
    # per address and window (HCP_WINDOW_QR_MAX_PER_ADDRESS)
    Column("window_id", String(64)),
    Column("address", String(64)),
    Index("ix_used_forms_window", "window_id", "address", "at"),
)

# a remark a kiosk rater added on the phone through the thank-you QR code;
# the kiosk's rating itself stays as it was made
followup_remarks = Table(
    "followup_remarks",
    metadata,
    Column("record_id", String(100), primary_key=True),
    Column("comment", Text, nullable=False),
    Column("received_at", String(32), nullable=False),
)
