"""Tables of the bad-review loop: cases, workflow, appeals, ledger (issue 9).

They live in db.metadata (db.py imports this module), so the migrations test
compares them with migrations/versions/0007_cases.py.

One case per counted 差评 (stars 1-2, not a repeat, not excluded when it
arrived), made in the transaction that stores the rating. Times are UTC text
like the other tables (`db.utc_now()`); `due_at` is YYYY-MM-DDTHH:MM:SSZ
(sync_server/deadlines.py) so it compares as text with the others' first 20
characters.

Other features read these (rankings: `state`, `due_at`, `rectified_at`,
`visit_verdict`, `unit_id`, `effective_at`); nobody but sync_server/cases*.py
writes them.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    false,
)

from sync_server.db import metadata

# state: open -> verified -> classified -> rectified -> fed_back -> visited
# -> closed (cases.WORKFLOW); a closed case may be reopened (state back to
# rectified, `reopened` counts how often); `voided` when an appeal found the
# rating mistaken or malicious (the rating is excluded, never deleted).
cases = Table(
    "cases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("record_id", String(100), nullable=False, unique=True),  # evaluations.id
    # the unit responsible (谁办理谁负责); NULL: nobody could be found, the
    # district office assigns it by hand
    Column("unit_id", String(64)),
    # how unit_id was found: rule:<id> | window | staff | device | item | manual | none
    Column("assigned_by", String(40), nullable=False),
    Column("state", String(16), nullable=False),
    # the classification: fix_now (立行立改) | ledger (台账) | explanation; NULL before
    Column("kind", String(16)),
    # the deadline rule applied: general | complex (sync_server/deadlines.py)
    Column("deadline_kind", String(16)),
    Column("due_at", String(20)),  # UTC; set when classified
    # copied from the rating (it never changes), so lists need no join
    Column("stars", SmallInteger, nullable=False),
    Column("effective_at", String(20), nullable=False),
    Column("item_code", String(64)),
    Column("window_id", String(64)),
    Column("staff_id", String(64)),
    # the rating carried no reason; the call-back writes it here, never into the rating
    Column("reason_owed", Boolean, nullable=False, default=False, server_default=false()),
    Column("reason", Text),
    Column("problem", Text),  # what the verification found
    Column("visit_verdict", String(16)),  # satisfied | unsatisfied (回访)
    Column("appeal_state", String(16)),  # NULL | pending | upheld | mistaken | malicious
    Column("reopened", SmallInteger, nullable=False, default=0, server_default="0"),
    Column("created_at", String(32), nullable=False),
    Column("verified_at", String(32)),
    Column("classified_at", String(32)),
    Column("rectified_at", String(32)),
    Column("fed_back_at", String(32)),
    Column("visited_at", String(32)),
    Column("closed_at", String(32)),
    Column("updated_at", String(32), nullable=False),
    Index("ix_cases_unit_state", "unit_id", "state"),
    Index("ix_cases_state_due", "state", "due_at"),
    # the digest, the overdue filter and the rankings ask by deadline alone (0014)
    Index("ix_cases_due_at", "due_at"),
    Index("ix_cases_effective_at", "effective_at"),
)

# every step of every case: who, when, what, with the note they gave
case_steps = Table(
    "case_steps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, nullable=False),
    # open | assign | verify | classify | rectify | feed_back | visit | close
    # | reopen | appeal | decide
    Column("action", String(16), nullable=False),
    Column("from_state", String(16)),
    Column("to_state", String(16), nullable=False),
    Column("actor", String(80), nullable=False),  # a username, token:<id>, or system
    Column("role", String(16), nullable=False),
    Column("at", String(32), nullable=False),
    Column("note", Text),
    Column("detail", Text),  # JSON: what the step set (kind, due_at, verdict, ...)
    Index("ix_case_steps_case", "case_id", "id"),
)

# a unit contests a 差评 (复核纠正); a supervisor decides
case_appeals = Table(
    "case_appeals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, nullable=False),
    Column("record_id", String(100), nullable=False),
    Column("unit_id", String(64)),
    Column("evidence", Text, nullable=False),
    Column("file_name", String(200)),
    Column("file_type", String(100)),
    Column("file_data", LargeBinary),
    Column("file_bytes", Integer),
    Column("filed_by", String(80), nullable=False),
    Column("filed_at", String(32), nullable=False),
    Column("state", String(16), nullable=False),  # pending | upheld | mistaken | malicious
    Column("decided_by", String(80)),
    Column("decided_at", String(32)),
    Column("decision_reason", Text),
    Index("ix_case_appeals_state", "state", "filed_at"),
    Index("ix_case_appeals_case", "case_id"),
)

# who gets a case: an admin's rule beats the unit of the rating's window,
# staff member or device (cases.assign); match_kind item | window | staff | unit
case_rules = Table(
    "case_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("match_kind", String(8), nullable=False),
    Column("match_id", String(64), nullable=False),
    Column("unit_id", String(64), nullable=False),  # the unit that gets the case
    Column("note", Text),
    Column("created_by", String(80), nullable=False),
    Column("created_at", String(32), nullable=False),
    Index("ux_case_rules_match", "match_kind", "match_id", unique=True),
)

# a unit's duty contacts (值班联系人): who is alerted of a new case
duty_contacts = Table(
    "duty_contacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("unit_id", String(64), nullable=False),
    Column("name", String(100), nullable=False),
    Column("phone", String(20)),
    Column("email", String(200)),
    Column("created_by", String(80), nullable=False),
    Column("created_at", String(32), nullable=False),
    Index("ix_duty_contacts_unit", "unit_id"),
)

# one alert per new case, recorded at once; a sender delivers it afterwards
# (cases_alerts.py), outside the transaction that stores ratings
case_alerts = Table(
    "case_alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, nullable=False),
    Column("unit_id", String(64)),
    Column("recipients", Text, nullable=False),  # JSON list of {name, phone, email}
    Column("state", String(16), nullable=False),  # pending | sent | failed | no_contact
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("created_at", String(32), nullable=False),
    Column("sent_at", String(32)),
    Column("last_error", Text),
    Index("ix_case_alerts_state", "state", "id"),
    Index("ix_case_alerts_unit", "unit_id", "id"),
)
