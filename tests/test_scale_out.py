"""Collectors that share the work: MQTT shared subscriptions on Mosquitto, one PostgreSQL.

Two IngestServices in the same share group each get part of the messages;
one is killed in the middle (no goodbye, nothing more PUBACKed), and the
keypads' records it held are sent again by the keypads (no ack came) and
stored by the other: every (device, seq) ends up stored exactly once.

Mosquitto runs with access control on (broker_auth's files, a login per
collector: with use_username_as_clientid each login is its own session).
"""

import secrets
import time

import pytest
from sqlalchemy import func, select

from hcp.broker import SecuredMosquitto
from simulators.keypad import SimKeypad
from sync_server import db
from sync_server.ingest import IngestService
from tests.harness.broker import assert_access_control, require_kind
from tests.harness.collector import provision

pytestmark = pytest.mark.broker


def wait_for(predicate, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def counts(engine):
    e = db.evaluations.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(e.device_id, func.count(), func.count(func.distinct(e.seq)), func.max(e.seq))
            .group_by(e.device_id)
            .order_by(e.device_id)
        ).all()
    return [tuple(row) for row in rows]


def test_a_share_group_must_be_a_plain_name():
    with pytest.raises(ValueError, match="share_group: must be 1..32 characters"):
        IngestService(None, "127.0.0.1", 1, share_group="a/b")


@pytest.fixture
def broker(tmp_path):
    """Mosquitto with access control on and logins for two collectors."""
    require_kind("mosquitto")
    broker = SecuredMosquitto(workdir=tmp_path / "broker", collectors=2).start()
    yield broker
    broker.close()


def test_two_collectors_share_the_work_and_a_killed_one_loses_nothing(
    broker, postgres_url, tmp_path
):
    engine = db.make_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    db.init(engine)
    collectors = []
    for n in (1, 2):
        user, password = broker.collector_login(n)
        collectors.append(IngestService(engine, broker.host, broker.port, client_id=f"collector-{n}",
                                        username=user, password=password, share_group="hcp"))  # fmt: skip
    for collector in collectors:
        collector.start()
    keypads = []
    try:
        for n in range(4):
            key_hex = secrets.token_hex(32)
            provision(broker, engine, f"kp-s{n}", key_hex)
            if n == 0:  # before its keypad runs: the check logs in as the device
                assert_access_control(broker, ("kp-s0", key_hex))
            keypad = SimKeypad(f"kp-s{n}", key_hex, broker.host, broker.port,
                               str(tmp_path / f"kp-s{n}"), ack_timeout_ms=1500,
                               confirm_ms=50)  # fmt: skip
            keypads.append(keypad.start())
        for stars in (5, 4, 1):
            for keypad in keypads:
                keypad.rate(stars)
        wait_for(lambda: all(c.records_stored > 0 for c in collectors), what="both collectors busy")
        collectors[0].kill()
        for stars in (3, 2, 5, 1):
            for keypad in keypads:
                keypad.rate(stars)
        for keypad in keypads:
            assert keypad.wait_drained(30), "the keypad's records were all acked"
        made = [keypad.call(lambda d: d.store.last_seq) for keypad in keypads]
        assert min(made) >= 5, "a loaded machine may miss a simulated press, not most"
        # every seq each keypad made is stored, once (distinct seqs, none above it)
        assert counts(engine) == [(f"kp-s{n}", made[n], made[n], made[n]) for n in range(4)]
        total = sum(made)
        assert collectors[0].records_stored + collectors[1].records_stored >= total
    finally:
        for keypad in keypads:
            keypad.stop()
            assert keypad.errors == []
        collectors[1].stop()
        engine.dispose()


def test_broker_auth_writes_a_login_per_collector(tmp_path):
    from sync_server import broker_auth

    passwd, acl, _conf = broker_auth.write_files(
        tmp_path, [("kp-01", "ab" * 32)], "a long collector password", collectors=3
    )
    users = [line.split(":")[0] for line in passwd.read_text().split()]
    assert users == ["hcp-collector", "hcp-collector-2", "hcp-collector-3", "kp-01"]
    text = acl.read_text()
    for user in users[:3]:
        assert (
            f"user {user}\ntopic read hcp/v1/dev/+/up/#\ntopic write hcp/v1/dev/+/down/#\n" in text
        )
    assert text.rstrip().endswith("pattern read hcp/v1/dev/%u/down/#")
    with pytest.raises(ValueError, match="collectors: must be 1..64"):
        broker_auth.collector_users(0)


def test_serve_refuses_a_share_group_that_is_not_a_plain_name(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "hcp", "collector", "serve", "--db", f"sqlite:///{tmp_path}/c.db",
         "--mqtt", "mqtt://127.0.0.1:1", "--share-group", "a/b"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().endswith(
        "error: --share-group: must be 1..32 characters of A-Z a-z 0-9 - _"
    )
