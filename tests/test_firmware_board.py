"""Firmware updates on the virtual board: MicroPython's unix port running the
firmware `hcp provision --flash` wrote, updated over the air from the
collector (issue 11).

Access control is on: Mosquitto runs on broker_auth's files and provisioning
adds the board's login (`--broker-auth-dir`, SIGHUP). One board, provisioned
as a technician does it, then:

1. a good update (0.2.0): the fleet agent sends the signed `update`, the board
   downloads the bundle in chunks over HTTP from the collector, stages it in
   /fw/0.2.0, switches, reboots into it (/boot.py puts the slot first in
   sys.path: the 0.2.0 code leaves a mark the 0.1.0 code does not), reports
   0.2.0 and confirms itself; the rollout shows it healthy;
2. a firmware that does not come up (0.3.0: its main() raises): the board
   stages and switches to it; it dies at every boot and /main.py resets it
   (a firmware on trial that raises); on the fourth boot /boot.py rolls back
   to 0.2.0, which reports, and the rollout shows the device rolled back;
3. a firmware that runs but never reports (0.4.0: its sync never connects)
   is rolled back by its own health deadline (5 s here): the trial resets the
   board and 0.2.0 reports again.

The bundles are compiled with mpy-cross from copies of this checkout with
one line changed.
"""

import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from hcp.broker import MosquittoBroker
from hcp.fleet import compiled
from simulators.virtual_board import VirtualBoard
from sync_server import broker_auth, db, firmware
from sync_server.cli import serve_web
from sync_server.fleet_agent import FleetAgent
from sync_server.ingest import IngestService
from sync_server.schema_fleet import firmware_targets
from tests.harness.broker import require_kind
from tests.harness.collector import make_app
from tests.harness.micropython_unix import require_micropython32
from tests.test_firmware import Slow, free_port
from tests.test_provision import OFFLINE_SETTINGS, hcp
from tests.test_revocation import wait_for

ROOT = Path(__file__).resolve().parent.parent
MARK = '    open("/data/booted_from", "w").write("{version}")\n'
BROKEN = '    raise RuntimeError("firmware {version} does not come up")\n'


SILENT = "        return False  # {version}: never connects\n"


def bundle_source(tmp_path, version, line, module="main", where="\ndef main():\n"):
    """A copy of the firmware sources where `line` follows `where` in device/`module`.py."""
    tree = tmp_path / f"src-{version}"
    for folder in ("device", "protocols", "hardware"):
        shutil.copytree(ROOT / folder, tree / folder)
    source = tree / "device" / f"{module}.py"
    text = source.read_text()
    assert text.count(where) == 1
    source.write_text(text.replace(where, where + line.format(version=version)))
    return tree


def target(engine, rollout):
    with engine.connect() as conn:
        t = firmware_targets.c
        return conn.execute(
            select(t.state, t.detail).where(t.rollout_id == rollout, t.device_id == "kp-fw-01")
        ).one()


def status(engine):
    with engine.connect() as conn:
        row = conn.execute(
            select(db.devices.c.status).where(db.devices.c.device_id == "kp-fw-01")
        ).scalar()
    return json.loads(row) if row else {}


PASSWORD = "collector-secret-1"


@pytest.fixture
def world(virtual_board, tmp_path):
    """Access control on: Mosquitto locked down by broker_auth's files (two
    collector logins, the second for provisioning's watch, and the fleet
    agent's); the ingest and the agent logged in; the collector's web app
    serving the bundles; and `provision()`, which runs `hcp provision --flash`
    as a technician does, adding the board's login and reloading Mosquitto."""
    require_kind("mosquitto")
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    app = make_app(tmp_path / "web", url)
    engine = app.extensions["hcp_engine"]
    auth_dir = tmp_path / "auth"
    broker_auth.write_files(auth_dir, [], PASSWORD, free_port(), "127.0.0.1", collectors=2,
                            fleet=True)  # fmt: skip
    broker = MosquittoBroker(workdir=tmp_path / "broker", auth_dir=auth_dir).start()
    port = free_port()
    slow = Slow(app)
    server, _thread = serve_web(slow, "127.0.0.1", port)
    ingest = IngestService(engine, broker.host, broker.port, client_id=broker_auth.COLLECTOR_USER,
                           username=broker_auth.COLLECTOR_USER, password=PASSWORD)  # fmt: skip
    ingest.start()
    agent = FleetAgent(engine, broker.host, broker.port, password=PASSWORD).start()

    def provision(*extra):
        run, seconds = hcp(
            "provision", "--port", virtual_board.port, "--db", url, "--device-id", "kp-fw-01",
            "--window", "A01", "--broker-host", broker.host, "--broker-port", str(broker.port),
            "--mqtt", f"mqtt://hcp-collector-2:{PASSWORD}@{broker.host}:{broker.port}",
            "--broker-auth-dir", str(auth_dir), "--collector-password", PASSWORD,
            "--collectors", "2", "--broker-pid", str(broker._proc.pid),
            "--flash", "--timeout", "40", *OFFLINE_SETTINGS, "--set", "status_every_ms=1000", *extra,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        users = [line.split(":")[0] for line in (auth_dir / "passwd").read_text().split()]
        assert users == ["hcp-collector", "hcp-collector-2", "hcp-fleet", "kp-fw-01"]
        assert wait_for(lambda: status(engine).get("online") is True, 30)
        return seconds

    yield SimpleNamespace(engine=engine, url=f"http://127.0.0.1:{port}/", board=virtual_board,
                          provision=provision, slow=slow)  # fmt: skip
    agent.stop()
    ingest.stop()
    server.shutdown()
    broker.stop()
    engine.dispose()


def test_an_update_on_the_board_then_two_rollbacks(world, tmp_path, monkeypatch):
    require_micropython32()
    # the deadline of step 3 is 5 s: the floor lowered on both sides (the
    # collector's MIN_HEALTH_S, the board's health_min_s), so the test does not
    # wait out the 30 s a real rollout gives at least
    monkeypatch.setattr(firmware, "MIN_HEALTH_S", 5)
    engine, virtual_board, port_url = world.engine, world.board, world.url
    boards = []
    try:
        # a 3 s watchdog (machine.WDT on the virtual board resets a board fed late)
        seconds = world.provision("--set", "watchdog_ms=3000", "--set", "health_min_s=5")
        root = virtual_board.root
        assert (root / "boot.py").read_text().startswith("# hcp: choose the firmware slot")
        assert wait_for(lambda: status(engine).get("online") is True, 30)
        assert status(engine)["fw"] == "0.1.0"
        with engine.begin() as conn:
            for version, line in (("0.2.0", MARK), ("0.3.0", BROKEN)):
                files = compiled(bundle_source(tmp_path, version, line), "sim")
                firmware.add_bundle(conn, version, files, "test")
                if version == "0.2.0":
                    good_files, good_bytes = len(files), sum(len(d) for d in files.values())
            good = firmware.start_rollout(conn, "0.2.0", "devices:kp-fw-01", 100, "admin",
                                          port_url, health_s=120)  # fmt: skip

        # 1. the good update: staged, switched, running from its slot, confirmed.
        # Each chunk is answered 0.1 s late: the download takes longer than the
        # watchdog allows, and is fed all along (no watchdog reset)
        world.slow.delay = 0.1
        started = time.monotonic()
        assert wait_for(lambda: target(engine, good).state == "healthy", 120), target(engine, good)
        update_s = time.monotonic() - started
        world.slow.delay = 0.0
        assert len(world.slow.chunks) * 0.1 > 3  # the download outlasted the watchdog
        assert virtual_board.watchdog_resets == 0
        assert status(engine).get("reset_cause") != "watchdog"
        assert (root / "data" / "booted_from").read_text() == "0.2.0"  # the slot's code ran
        # the ingest stores the status the agent saw: its own subscriber, its own pace
        assert wait_for(lambda: status(engine)["fw"] == "0.2.0", 10)
        fw = root / "data" / "fw.json"
        assert wait_for(lambda: "trial" not in json.loads(fw.read_text()), 20)
        assert json.loads(fw.read_text()) == {
            "active": "/fw/0.2.0", "version": "0.2.0", "previous": "/lib",
            "previous_version": "0.1.0",
        }  # fmt: skip

        # 2. a firmware that does not come up: rolled back by /boot.py
        with engine.begin() as conn:
            bad = firmware.start_rollout(conn, "0.3.0", "devices:kp-fw-01", 100, "admin",
                                         port_url, health_s=120)  # fmt: skip
        assert wait_for(lambda: target(engine, bad).state == "accepted", 120), target(engine, bad)
        assert wait_for(lambda: json.loads(fw.read_text()).get("boots") == 1, 30)
        # main() raises at every boot: /main.py resets a firmware on trial that
        # does not start (5 s later), nobody power-cycles the board
        resets = virtual_board.resets
        assert wait_for(lambda: target(engine, bad).state == "rolled_back", 90), target(engine, bad)
        assert virtual_board.resets - resets == 3  # boots 2, 3 and the fourth, rolled back
        assert target(engine, bad).detail == "came back running 0.2.0"
        assert json.loads(fw.read_text()) == {
            "active": "/fw/0.2.0", "version": "0.2.0", "rolled_back": "0.3.0",
            "reason": "did not come up in 3 boots", "noted": True,
        }  # fmt: skip
        # the firmware that runs again says why, once, in its crash file and status
        assert (
            status(engine)["last_error"] == "update: 0.3.0 rolled back: did not come up in 3 boots"
        )

        # 3. a firmware that runs but never reports: rolled back by its deadline
        tree = bundle_source(tmp_path, "0.4.0", SILENT, "sync",
                             "    def step(self, now_ms):\n")  # fmt: skip
        with engine.begin() as conn:
            firmware.add_bundle(conn, "0.4.0", compiled(tree, "sim"), "test")
            silent = firmware.start_rollout(conn, "0.4.0", "devices:kp-fw-01", 100, "admin",
                                            port_url, health_s=5)  # fmt: skip
        assert wait_for(lambda: target(engine, silent).state == "accepted", 60)
        # the trial's deadline, not the fourth boot: the board started once on trial
        assert wait_for(lambda: json.loads(fw.read_text()).get("rolled_back") == "0.4.0", 90)
        state = json.loads(fw.read_text())
        state.pop("noted", None)  # the next boot notes the rollback
        assert state == {
            "active": "/fw/0.2.0", "version": "0.2.0", "rolled_back": "0.4.0",
            "reason": "not healthy within 5 s",
        }  # fmt: skip
        assert wait_for(lambda: target(engine, silent).state == "rolled_back", 60)
        assert target(engine, silent).detail == "came back running 0.2.0"
        assert wait_for(lambda: status(engine)["fw"] == "0.2.0", 10)
        assert wait_for(
            lambda: (
                status(engine).get("last_error")
                == "update: 0.4.0 rolled back: not healthy within 5 s"
            ),
            10,
        )
        assert status(engine)["online"] is True
        print(f"provisioning took {seconds:.1f} s; the update of {good_files} files, {good_bytes} B, "
              f"from rollout to healthy took {update_s:.1f} s")  # fmt: skip
    finally:
        for board in boards:
            board.stop()


def test_a_corrupted_chunk_and_a_power_cut_while_staging(world, tmp_path, monkeypatch):
    """On the board: a bundle with a corrupted chunk is refused and 0.1.0 runs
    on; then a power cut halfway through a download leaves 0.1.0 running, and
    the update, sent again, resumes at the chunk where it stopped."""
    from sync_server import fleet
    from sync_server.schema_fleet import firmware_files

    binary = require_micropython32()
    engine, board = world.engine, world.board
    root = board.root
    monkeypatch.setattr(fleet, "RESEND_AFTER_S", 3)  # unanswered: sent again after 3 s
    world.provision()
    files = compiled(bundle_source(tmp_path, "0.2.0", MARK), "sim")
    with engine.begin() as conn:
        firmware.add_bundle(conn, "0.2.0", files, "test")
        firmware.add_bundle(conn, "0.2.0-bad", files, "test")
        bad = bytearray(files["device/app.mpy"])
        bad[100] ^= 0xFF
        f = firmware_files.c
        conn.execute(
            firmware_files.update()
            .where(f.version == "0.2.0-bad", f.path == "device/app.mpy")
            .values(data=bytes(bad))
        )
        refused = firmware.start_rollout(conn, "0.2.0-bad", "devices:kp-fw-01", 100, "admin",
                                         world.url, health_s=120)  # fmt: skip
    assert wait_for(lambda: target(engine, refused).state == "failed", 60), target(engine, refused)
    assert target(engine, refused).detail == (
        "failed: chunk 0 of device/app.mpy: sha256 does not match the manifest"
    )
    assert world.slow.chunks.count("path=device/app.mpy&n=0&d=kp-fw-01") == 3  # tried three times
    assert not (root / "data" / "fw.json").exists() and not (root / "data" / "booted_from").exists()
    assert status(engine)["fw"] == "0.1.0" and status(engine)["online"] is True

    # a slow link, and the power goes halfway through the download
    world.slow.delay = 0.3
    world.slow.chunks.clear()
    with engine.begin() as conn:
        rollout = firmware.start_rollout(conn, "0.2.0", "devices:kp-fw-01", 100, "admin",
                                         world.url, health_s=120)  # fmt: skip
    progress = root / "data" / "fw_progress.json"
    assert wait_for(lambda: progress.exists() and json.loads(progress.read_text())["file"] >= 3, 60)
    board.stop()  # the power cut
    where = json.loads(progress.read_text())
    before = len(world.slow.chunks)
    assert not (root / "data" / "fw.json").exists()  # nothing switched: 0.1.0 is what boots
    world.slow.delay = 0.0
    world.slow.chunks.clear()
    again = VirtualBoard(root, binary).start()
    try:
        assert wait_for(lambda: target(engine, rollout).state == "healthy", 120), target(
            engine, rollout
        )
        assert (root / "data" / "booted_from").read_text() == "0.2.0"
        manifest = firmware.make_manifest("0.2.0", files)
        total = sum(len(entry["chunks"]) for entry in manifest["files"])
        # the download went on from where it stopped: what came before was not fetched again
        entries = manifest["files"]
        index, n = where["file"], where["n"]
        if n == len(entries[index]["chunks"]):  # that file was complete: the next one
            index, n = index + 1, 0
        assert world.slow.chunks[0] == f"path={entries[index]['path']}&n={n}&d=kp-fw-01"
        assert before + len(world.slow.chunks) <= total + 1
        assert len(world.slow.chunks) < total
        print(f"power cut after {before} of {total} chunks; {len(world.slow.chunks)} after")
    finally:
        again.stop()


def test_the_virtual_boards_watchdog_resets_a_board_fed_too_late(virtual_board):
    """What the slow download above is checked against: the virtual board's
    machine.WDT, fed in time, never resets; fed later than its timeout, it
    resets the board, which boots again saying so (reset_cause WDT_RESET)."""
    from tests.harness.virtual_board import mpremote

    on_time = (
        "import machine, time\nw = machine.WDT(timeout=1000)\n"
        "for _ in range(5):\n    time.sleep_ms(50)\n    w.feed()\nprint(w.feeds)"
    )
    run = mpremote(virtual_board.port, "exec", on_time)
    assert run.returncode == 0 and run.stdout.strip() == "5", run.stdout + run.stderr
    assert virtual_board.watchdog_resets == 0
    late = "import machine, time\nw = machine.WDT(timeout=100)\ntime.sleep_ms(300)\nw.feed()"
    mpremote(virtual_board.port, "exec", late)
    assert wait_for(lambda: virtual_board.watchdog_resets == 1, 10)
    assert virtual_board.wait_idle(10)
    run = mpremote(virtual_board.port, "exec", "import machine\nprint(machine.reset_cause())")
    assert run.stdout.strip() == "3", run.stdout + run.stderr  # machine.WDT_RESET
