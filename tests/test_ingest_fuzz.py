"""Fuzzing the collector's ingest: whatever arrives, it never raises, never
counts a bad record, and leaves a trace of everything (stored or quarantined)."""

import hashlib
import json
import os
import secrets

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from protocols import messages, sign, topics
from sync_server import db, quarantine
from sync_server.ingest import Ingestor
from tests.harness.records import signed

KEY_HEX = secrets.token_hex(32)
EV = topics.topic("kp-01", topics.UP_EV)
FUZZ = settings(
    max_examples=int(os.environ.get("HCP_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def ingestor(tmp_path_factory):
    engine = db.make_engine(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'c.db'}")
    db.init(engine)
    db.add_device(engine, "kp-01", KEY_HEX)
    # bounds out of the way: thousands of examples from one device in an hour
    yield Ingestor(engine, quarantine.Bounds(per_device_hour=10**9, total=10**9))
    engine.dispose()


def counts(engine):
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(db.evaluations)).scalar()
        held = conn.execute(select(func.count()).select_from(db.quarantine)).scalar()
    return stored, held


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)

FIELDS = ["id", "device_id", "seq", "stars", "channel", "rated_at", "clock", "origin",
          "attempt", "tags", "content_version", "sig", "comment", "follows", "client",
          "case_staff_id", "handled_at", "entered_by", "card_date", "contact"]  # fmt: skip


def valid_record(seq):
    return signed(seq, 1 + seq % 5, key=bytes.fromhex(KEY_HEX))


def kept_whole(engine, payload: bytes) -> int:
    """Quarantine rows holding this whole message (once, however often it came)."""
    digest = hashlib.sha256(payload).hexdigest()
    with engine.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(db.quarantine)
            .where(db.quarantine.c.payload_sha256 == digest, db.quarantine.c.record_id.is_(None))
        ).scalar()


@FUZZ
@given(payload=st.binary(max_size=300))
def test_arbitrary_bytes_are_quarantined_whole(ingestor, payload):
    before = counts(ingestor.engine)
    outcome = ingestor.process(EV, payload)
    stored, held = counts(ingestor.engine)
    assert stored == before[0]
    assert held == before[1] + outcome.quarantine_rows_added and outcome.ack_topic is None
    assert kept_whole(ingestor.engine, payload) == 1


@FUZZ
@given(value=json_values)
def test_arbitrary_json_is_quarantined_whole(ingestor, value):
    payload = json.dumps(value).encode()
    before = counts(ingestor.engine)
    outcome = ingestor.process(EV, payload)
    assert counts(ingestor.engine) == (before[0], before[1] + outcome.quarantine_rows_added)
    assert kept_whole(ingestor.engine, payload) == 1


@FUZZ
@given(
    seq=st.integers(1, 10**9),
    field=st.sampled_from(FIELDS),
    value=json_values,
)
def test_a_record_with_one_field_changed_is_stored_only_if_still_valid_and_signed(
    ingestor, seq, field, value
):
    rec = valid_record(seq)
    rec[field] = value  # after signing: anything but a no-op change breaks the signature
    before = counts(ingestor.engine)
    outcome = ingestor.process(EV, messages.encode(messages.batch("kp-01", 1, [rec])))
    stored, held = counts(ingestor.engine)
    accounted = len(outcome.stored) + len(outcome.duplicates) + len(outcome.quarantined)
    assert accounted == 1, "every record is stored, a duplicate, or quarantined"
    if outcome.stored:
        assert stored == before[0] + 1 and sign.verify(rec, bytes.fromhex(KEY_HEX))
    else:
        assert stored == before[0]
    assert held == before[1] + outcome.quarantine_rows_added
    assert outcome.quarantine_rows_added <= len(outcome.quarantined)
