"""kill -9 in the middle of the kiosk's writes: nothing lost, nothing doubled.

A real subprocess (this file run as a script) drives the kiosk headless through
whole ratings with real pygame events, as fast as it can, each with a contact,
and prints each record id once its transaction has committed. The test kills
it with SIGKILL at random moments, restarts it on the same store, again and
again, then lets the kiosk's sync worker deliver to a real broker (Mosquitto
with access control on: the kiosk and the collector each log in with their
own login) and the collector. Every id printed must be at the collector once, the seqs must run
1..last_seq without a gap or a repeat, and nothing may be quarantined.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(folder: str) -> None:
    """The subprocess: rate forever, printing each committed record id."""
    sys.path.insert(0, str(ROOT))
    os.environ["SDL_VIDEODRIVER"] = "dummy"
    from tests.test_kiosk_flow import Kiosk, demo_config

    k = Kiosk(folder, demo_config())
    print("started", k.store.last_seq, flush=True)
    levels = [5, 4, 3, 2, 1]
    tags = {5: "服务热情", 4: "指引清楚", 3: "基本顺利", 2: "等候时间长", 1: "服务态度差"}
    n = 0
    while True:
        stars = levels[n % 5]
        before = k.store.last_seq
        k.rate(stars, tags=[tags[stars]], phone="13800000000")
        assert k.scene == "thanks"
        print("made", k.app.scene.persist["record_id"], before, flush=True)
        k.tap("首页")
        n += 1


if __name__ == "__main__":
    worker(sys.argv[1])
    sys.exit(0)


import pytest  # noqa: E402
from sqlalchemy import select  # noqa: E402

from kiosk.store import KioskStore  # noqa: E402
from sync_server import db  # noqa: E402


def run_and_kill(folder, seconds, rng):
    """Start the worker, let it rate for a random while, SIGKILL it. The ids it
    reported as made."""
    proc = subprocess.Popen(
        [sys.executable, __file__, str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "SDL_VIDEODRIVER": "dummy", "PYTHONPATH": str(ROOT)},
    )
    line = proc.stdout.readline()
    assert line.startswith("started"), line + proc.stderr.read()
    time.sleep(seconds * rng.random() + 0.05)
    proc.kill()  # SIGKILL: no cleanup, maybe in the middle of a commit
    out, err = proc.communicate()
    assert proc.returncode == -9, err
    return [line.split()[1] for line in out.splitlines() if line.startswith("made")]


@pytest.mark.broker
def test_kill_9_during_writes_loses_and_doubles_nothing(secured_mosquitto, tmp_path):
    from tests.harness.broker import assert_access_control
    from tests.harness.collector import provision
    from tests.test_kiosk_end_to_end import wait_for
    from tests.test_kiosk_flow import DEVICE, KEY_HEX, Kiosk, demo_config

    folder = tmp_path / "kiosk"
    rng = random.Random(int(time.time()))
    made = []
    for _ in range(6):
        made += run_and_kill(folder, 2.0, rng)
    assert len(made) == len(set(made)) and made, made

    store = KioskStore(folder)
    last = store.last_seq
    assert len(store) == last  # every seq made is held, each once
    assert sorted(r["seq"] for r in store.pending(10_000)) == list(range(1, last + 1))
    assert len(store.contacts(store.batch_plan(10_000))) == last
    store.close()

    engine = db.make_engine(f"sqlite:///{tmp_path / 'collector.db'}")
    db.init(engine)
    broker = secured_mosquitto
    provision(broker, engine, DEVICE, KEY_HEX, kind="kiosk")
    assert_access_control(broker, (DEVICE, KEY_HEX))
    from kiosk.service import SyncWorker
    from sync_server.ingest import IngestService

    user, password = broker.collector_login()
    service = IngestService(engine, broker.host, broker.port, client_id="kill-test",
                            username=user, password=password)  # fmt: skip
    service.start()
    k = Kiosk(folder, demo_config(), broker_host=broker.host,
              broker_port=broker.port, data_dir=str(folder))  # fmt: skip
    sync = SyncWorker(k.settings, k.app).start()
    try:
        wait_for(lambda: len(k.store) == 0, k, timeout=60, what="the backlog delivered")
    finally:
        sync.stop()
        k.close()
        service.stop()
    ev = db.evaluations.c
    with engine.connect() as conn:
        ids = conn.execute(select(ev.id).order_by(ev.seq)).scalars().all()
        seqs = conn.execute(select(ev.seq).order_by(ev.seq)).scalars().all()
        phones = conn.execute(select(db.contacts.c.record_id)).scalars().all()
        quarantined = conn.execute(select(db.quarantine.c.reason)).scalars().all()
    engine.dispose()
    assert seqs == list(range(1, last + 1))  # no gap, no repeat
    assert set(made) <= set(ids)  # every rating shown as made is there
    print(f"kill -9 x6: {len(made)} ratings reported made, {len(ids)} at the collector")
    assert len(ids) - len(made) <= 6  # at most one a kill: committed, not yet printed
    assert sorted(phones) == sorted(ids)
    assert quarantined == []
