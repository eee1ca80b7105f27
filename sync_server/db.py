"""The collector's storage: one SQLAlchemy Core schema for SQLite and PostgreSQL.

All database access of the collector goes through this module.
"""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    create_engine,
    event,
    false,
    func,
    select,
)
from sqlalchemy.engine import Engine

from protocols.levels import DEVICE_CHANNELS

metadata = MetaData()

evaluations = Table(
    "evaluations",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("device_id", String(32)),
    Column("seq", BigInteger),
    Column("stars", SmallInteger, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("tags", Text),  # JSON list of tag codes
    Column("content_version", String(32)),
    Column("comment", Text),
    Column("case_no", String(64)),
    Column("service_no", String(64)),
    Column("item_code", String(64)),
    Column("window_id", String(64)),
    Column("staff_id", String(64)),
    Column("org_id", String(64)),
    Column("rated_at", String(20), nullable=False),  # UTC, YYYY-MM-DDTHH:MM:SSZ
    Column("clock", String(8), nullable=False),
    Column("boot_id", String(32)),
    Column("uptime_ms", BigInteger),
    Column("origin", String(16), nullable=False),
    Column("attempt", SmallInteger, nullable=False),
    Column("follows", String(100)),  # an appended rating: the id of the rating it follows
    Column("case_staff_id", String(64)),  # who handled the case (from the business system)
    Column("case_org_id", String(64)),
    Column("handled_at", String(20)),  # when the service was handled, UTC
    Column("client", String(8)),  # web and QR ratings: pc | mobile
    Column("entered_by", String(64)),  # paper cards: who typed the card in, when,
    Column("entered_at", String(20)),  # and the date written on the card
    Column("card_date", String(10)),
    Column("sig", String(64)),
    Column("received_at", String(32), nullable=False),
    # when the rating was made, as best known: rated_at when the device clock
    # was trusted, else estimated from boot_id/uptime_ms (sync_server/clock.py)
    Column("effective_at", String(20), nullable=False),
    Column("time_source", String(12), nullable=False),  # device | estimated | received
    # set by a supervisor's review (误评/恶意): kept, but out of scores
    Column("excluded", Boolean, nullable=False, default=False),
    # a 差评 stored without a reason (no tag, no text): the call-back owes one
    Column("reason_owed", Boolean, nullable=False, default=False, server_default=false()),
    # a later rating of a service event that was rated already (another channel,
    # a late offline device): stored, never counted; the id of the one that counts
    Column("repeat_of", String(100)),
    # each secondary index serves a query (docs/architecture.md, "Ingest"): every
    # one more costs each stored rating an index entry; rated_at has none (0019)
    Index("ix_evaluations_device_seq", "device_id", "seq", unique=True),
    Index("ix_evaluations_effective_at", "effective_at"),
    Index("ix_evaluations_boot", "device_id", "boot_id"),
    Index("ix_evaluations_stars", "stars"),
    Index("ix_evaluations_window_id", "window_id"),
    Index("ix_evaluations_staff_id", "staff_id"),
    Index("ix_evaluations_org_id", "org_id"),
    Index("ix_evaluations_case_no", "case_no", "service_no"),
)

# The collector's own clock against a device's uptime in one boot, from the
# device's live (not retained) status messages.
boot_clocks = Table(
    "boot_clocks",
    metadata,
    Column("device_id", String(32), primary_key=True),
    Column("boot_id", String(32), primary_key=True),
    Column("uptime_ms", BigInteger, nullable=False),
    Column("at", String(32), nullable=False),  # collector UTC time the status arrived
)

# A rater's contact for the return visit, apart from the evaluation it
# belongs to (confidential, DOMAIN §7): no list or page joins it in.
contacts = Table(
    "contacts",
    metadata,
    Column("record_id", String(100), primary_key=True),
    # sealed (sync_server/contacts.py): SM4 and a MAC, never the number in clear
    Column("contact", String(128), nullable=False),
    Column("lookup", String(64)),  # keyed hash of the number, to match it across ratings
    Column("received_at", String(32), nullable=False),
)

# The channel -> provincial pf table in force (protocols.levels.CHANNEL_TO_PF
# is the default); client "" is any client, pf NULL means not configured.
pf_map = Table(
    "pf_map",
    metadata,
    Column("channel", String(16), primary_key=True),
    Column("client", String(8), primary_key=True),
    Column("pf", SmallInteger),
    Column("updated_by", String(64)),
    Column("updated_at", String(32)),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("qid", Integer, primary_key=True, autoincrement=True),
    Column("received_at", String(32), nullable=False),
    Column("topic", Text, nullable=False),
    Column("device_id", String(64)),
    Column("record_id", String(100)),
    Column("reason", Text, nullable=False),
    # the record, or the whole message if unreadable: redacted (no contact)
    # and cut to a bound; payload_bytes and payload_sha256 describe the original
    Column("payload", Text, nullable=False),
    Column("payload_bytes", Integer),
    Column("payload_sha256", String(64)),
    Index("ix_quarantine_device", "device_id", "received_at"),
)

# What the quarantine's bounds turned away: rows not kept, per device and hour.
quarantine_dropped = Table(
    "quarantine_dropped",
    metadata,
    Column("device_id", String(64), primary_key=True),  # "" when unknown
    Column("hour", String(13), primary_key=True),  # UTC, YYYY-MM-DDTHH
    Column("dropped", Integer, nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("device_id", String(32), primary_key=True),
    Column("key_hex", String(128), nullable=False),  # HMAC key; secret
    Column("kind", String(16), nullable=False, default="keypad"),
    Column("name", Text),
    Column("org_id", String(64)),
    Column("window_id", String(64)),
    Column("created_at", String(32), nullable=False),
    Column("last_seen", String(32)),
    Column("status", Text),  # the last up/status message, JSON
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("unit_id", String(64)),  # unit managers and clerks: the root of their subtree
    Column("disabled_at", String(32)),
)

# failed logins, for the per-account and per-address limits (sync_server/auth.py)
login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False),
    Column("address", String(64), nullable=False),
    Column("at", String(32), nullable=False),
    Index("ix_login_failures_username", "username", "at"),
    Index("ix_login_failures_address", "address", "at"),
)

# every change, and every reveal of a rater's contact (sync_server/audit.py)
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(32), nullable=False),
    Column("actor", String(80), nullable=False),  # a username, or token:<id> for a token
    Column("role", String(16), nullable=False),
    Column("address", String(64)),
    Column("action", String(40), nullable=False),
    Column("target", String(200)),
    Column("before", Text),  # JSON, or NULL
    Column("after", Text),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_target", "target"),
)

# API tokens for machine clients (sync_server/tokens.py): only a hash is kept
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 hex
    Column("prefix", String(12), nullable=False),  # the first characters, to recognise it
    Column("role", String(16), nullable=False),
    Column("unit_id", String(64)),
    Column("created_by", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("revoked_at", String(32)),
    Column("last_used_at", String(32)),
)

# content tags (评价内容), versioned and level-dependent (sync_server/tags.py)
tag_versions = Table(
    "tag_versions",
    metadata,
    Column("version", String(32), primary_key=True),
    Column("label", Text, nullable=False),
    Column("in_force_from", String(20)),  # UTC; NULL: not (yet) in force
    Column("created_at", String(32), nullable=False),
    Column("updated_by", String(64)),
    Column("updated_at", String(32)),
)

content_tags = Table(
    "content_tags",
    metadata,
    Column("version", String(32), primary_key=True),
    Column("code", String(16), primary_key=True),
    Column("level", SmallInteger, nullable=False),  # stars 1..5
    Column("text", Text, nullable=False),
    Column("mode", String(8), nullable=False),  # online | offline
)


# --- the organisation (sync_server/org.py) ---------------------------------------
# Units (district, streets, towns, villages/communities, departments, halls and
# service points), windows, staff and service items. Where each sits in the tree
# is not a column of theirs but a row of `placements` with a validity period, so
# a move closes one row and opens another and every past rating still resolves
# to the unit of its time.

org_units = Table(
    "org_units",
    metadata,
    Column("id", String(64), primary_key=True),  # division code or our own code
    Column("name", Text, nullable=False),
    Column("kind", String(16), nullable=False),  # org.UNIT_KINDS
    Column("created_at", String(32), nullable=False),
    Column("retired_at", String(32)),
)

windows = Table(
    "windows",
    metadata,
    Column("id", String(64), primary_key=True),  # the window_id ratings carry
    Column("name", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("retired_at", String(32)),
)

staff = Table(
    "staff",
    metadata,
    Column("id", String(64), primary_key=True),  # 工号: the staff_id ratings carry
    Column("name", Text, nullable=False),
    Column("photo", LargeBinary),
    Column("photo_type", String(32)),
    Column("created_at", String(32), nullable=False),
    Column("retired_at", String(32)),
)

service_items = Table(
    "service_items",
    metadata,
    Column("id", String(64), primary_key=True),  # 事项实施编码
    Column("name", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("retired_at", String(32)),
)

# subject (kind unit|window|staff|item, id) sits under unit_id from valid_from
# (inclusive) to valid_to (exclusive; NULL while current); times UTC,
# YYYY-MM-DDTHH:MM:SSZ like evaluations.effective_at, so they compare as text
placements = Table(
    "placements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),
    Column("subject_id", String(64), nullable=False),
    Column("unit_id", String(64), nullable=False),
    Column("valid_from", String(20), nullable=False),
    Column("valid_to", String(20)),
    Index("ix_placements_subject", "kind", "subject_id", "valid_from"),
    Index("ix_placements_unit", "unit_id"),
)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_engine(url: str) -> Engine:
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # an ack must mean the batch survives a power cut
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

    return engine


MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection=None):
    """Alembic's configuration for this schema, on an open connection."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def init(engine: Engine) -> None:
    """Bring the schema to the newest migration (creating it on an empty database).

    A database already at the newest revision is left alone after one query
    (every process and every app start calls this)."""
    from alembic import command
    from alembic.migration import MigrationContext

    with engine.begin() as connection:
        if MigrationContext.configure(connection).get_current_revision() == head_revision():
            return
        command.upgrade(alembic_config(connection), "head")


@functools.cache
def head_revision() -> str:
    """The newest migration's revision id."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def get_engine() -> Engine:
    """The database engine of the web app handling the current request."""
    from flask import current_app

    return current_app.extensions["hcp_engine"]


def insert_ignoring_duplicates(engine: Engine, table: Table, key: str):
    """An INSERT that skips rows whose `key` already exists, on either dialect."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing(index_elements=[key])


def add_device(
    engine: Engine,
    device_id: str,
    key_hex: str,
    kind: str = "keypad",
    name: str | None = None,
    org_id: str | None = None,
    window_id: str | None = None,
) -> None:
    """Register a device and its signing key (provisioning). Its kind is the
    channel its records must carry."""
    if kind not in DEVICE_CHANNELS:
        raise ValueError(f"kind: must be one of {', '.join(DEVICE_CHANNELS)}, got {kind!r}")
    with engine.begin() as conn:
        conn.execute(
            devices.insert().values(
                device_id=device_id,
                key_hex=key_hex,
                kind=kind,
                name=name,
                org_id=org_id,
                window_id=window_id,
                created_at=utc_now(),
            )
        )


def update_device(
    engine: Engine, device_id: str, key_hex: str | None = None, window_id: str | None = None
) -> bool:
    """Give a registered device a new key (re-provisioning: the old key stops
    verifying) and/or bind it to a window. False when the id is not registered.
    A running collector caches keys: Ingestor.forget(device_id) drops its copy."""
    values = {}
    if key_hex is not None:
        values["key_hex"] = key_hex
    if window_id is not None:
        values["window_id"] = window_id
    if not values:
        raise ValueError("update_device: nothing to change")
    with engine.begin() as conn:
        done = conn.execute(
            devices.update().where(devices.c.device_id == device_id).values(**values)
        )
    return done.rowcount == 1


def count_evaluations(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(evaluations)).scalar()


def device_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(devices.c.device_id)).scalars())


def device_keys(engine: Engine) -> list[tuple[str, str]]:
    """(device_id, key_hex) of every device, for the broker's password file."""
    with engine.connect() as conn:
        return [
            (row.device_id, row.key_hex)
            for row in conn.execute(
                select(devices.c.device_id, devices.c.key_hex).order_by(devices.c.device_id)
            )
        ]


# Each feature keeps its tables in its own module, in this same metadata
from sync_server import (  # noqa: E402,F401
    schema_cases,
    schema_channels,
    schema_citizen,
    schema_figures,
    schema_fleet,
    schema_outbox,
    schema_rankings,
)
