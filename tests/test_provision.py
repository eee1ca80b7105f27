"""`hcp provision` end to end: the virtual board (MicroPython's unix port on a
pty), the real mpremote transport, a real Mosquitto, the collector's ingest
on SQLite. The firmware boots on the virtual board from the files
provisioning wrote (main.py, /lib/*.mpy, /data/config.json) and its first
status arrives at the collector."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from device import store as device_store
from hcp import provision
from hcp.cli import main as hcp_main
from sync_server import db
from tests.harness import records

ROOT = Path(__file__).resolve().parent.parent
OFFLINE_SETTINGS = ["--board", "sim", "--set", "ntp_host="]  # no NTP query leaves the machine


@pytest.fixture
def collector(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'collector.db'}")
    db.init(engine)
    yield engine, f"sqlite:///{tmp_path / 'collector.db'}"
    engine.dispose()


def hcp(*args, timeout=120) -> tuple[subprocess.CompletedProcess, float]:
    """`hcp ARGS` as a technician runs it (a new process); returns (run, seconds)."""
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "hcp", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONUTF8": "1", "COLUMNS": "200"},
    )
    return run, time.perf_counter() - started


def device_row(engine, device_id):
    d = db.devices.c
    with engine.connect() as conn:
        return conn.execute(select(db.devices).where(d.device_id == device_id)).first()


def decode_png(path):
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame
    import zxingcpp

    image = pygame.image.load(str(path))
    w, h = image.get_size()
    red = pygame.image.tobytes(image, "RGB")[0::3]
    return [code.text for code in zxingcpp.read_barcodes(memoryview(red).cast("B", (h, w)))]


def test_provision_flash_boot_and_online(virtual_board, mosquitto_broker, collector, tmp_path):
    from sync_server.ingest import IngestService

    engine, url = collector
    service = IngestService(engine, mosquitto_broker.host, mosquitto_broker.port)
    service.start()
    label = tmp_path / "label.png"
    try:
        run, seconds = hcp(
            "provision",
            "--port",
            virtual_board.port,
            "--db",
            url,
            "--device-id",
            "kp-a01-01",
            "--window",
            "A01",
            "--broker-host",
            mosquitto_broker.host,
            "--broker-port",
            str(mosquitto_broker.port),
            "--wifi-ssid",
            "hall",
            "--wifi-password",
            "secret-wifi",
            "--flash",
            "--label",
            str(label),
            "--timeout",
            "30",
            *OFFLINE_SETTINGS,
        )
        print(f"provisioning with --flash took {seconds:.2f} s (wall clock, a new process)")
        assert run.returncode == 0, run.stdout + run.stderr
        assert "设备已上线 / kp-a01-01 is online" in run.stdout
        assert "hcp collector broker-auth" in run.stdout  # the reminder
        # what the board holds: the firmware, main.py, config and the seeded state
        root = virtual_board.root
        assert (root / "main.py").read_text() == provision.MAIN_PY
        assert (root / "lib" / "device" / "main.mpy").is_file()
        config = json.loads((root / "data" / "config.json").read_text())
        assert not (root / "data" / "config.json.tmp").exists()
        row = device_row(engine, "kp-a01-01")
        assert config["key"] == row.key_hex and len(bytes.fromhex(row.key_hex)) == 32
        assert (config["device_id"], config["wifi_ssid"], config["board"]) == (
            "kp-a01-01",
            "hall",
            "sim",
        )
        assert (row.kind, row.window_id) == ("keypad", "A01")
        state = json.loads((root / "data" / "state").read_text())
        assert state["next_seq"] == 1 and state["known"] is True
        # the collector got the status the firmware sent after booting from those files
        deadline = time.monotonic() + 15
        while device_row(engine, "kp-a01-01").last_seen is None and time.monotonic() < deadline:
            time.sleep(0.1)
        status = json.loads(device_row(engine, "kp-a01-01").status)
        assert status["online"] is True
        assert decode_png(label) == ["kp-a01-01"]
        assert "█" in run.stdout  # the QR code in the terminal
    finally:
        service.stop()


def test_reprovision_gives_a_new_key_and_keeps_the_seq(virtual_board_factory, collector, tmp_path):
    from sync_server.ingest import Ingestor

    engine, url = collector
    board = virtual_board_factory()
    args = [
        "provision",
        "--port",
        board.port,
        "--db",
        url,
        "--device-id",
        "kp-b02-01",
        "--window",
        "B02",
        "--broker-host",
        "127.0.0.1",
        "--no-wait",
        *OFFLINE_SETTINGS,
    ]
    run, seconds = hcp(*args, "--flash")
    assert run.returncode == 0, run.stdout + run.stderr
    old_key = device_row(engine, "kp-b02-01").key_hex
    # the keypad has used seqs 1..41 since (its state says so)
    state_path = board.root / "data" / "state"
    state = json.loads(state_path.read_text())
    state["next_seq"] = 42
    state_path.write_text(json.dumps(state))

    # the same id again without --reprovision: refused, nothing changed
    run, _ = hcp(*args)
    assert run.returncode == 1
    assert run.stderr.strip() == (
        "错误 error: 设备编号已登记 / kp-b02-01 is already registered: give --reprovision "
        "to give it a new key (after a factory reset or a board swap)"
    )
    assert device_row(engine, "kp-b02-01").key_hex == old_key

    run, seconds = hcp(*args, "--reprovision")
    print(f"re-provisioning without --flash took {seconds:.2f} s (wall clock, a new process)")
    assert run.returncode == 0, run.stdout + run.stderr
    new_key = device_row(engine, "kp-b02-01").key_hex
    assert new_key != old_key
    assert json.loads((board.root / "data" / "config.json").read_text())["key"] == new_key
    # the seq goes on from 42: none reused (the firmware, booted again, may have
    # rewritten the file, with the same next_seq)
    assert json.loads(state_path.read_text())["next_seq"] == 42

    # a record signed with the old key no longer verifies: quarantined
    ingestor = Ingestor(engine)
    old = records.signed(42, device_id="kp-b02-01", key=bytes.fromhex(old_key))
    outcome = ingestor.process(
        records.ev_topic("kp-b02-01"), records.batch([old], device_id="kp-b02-01")
    )
    assert outcome.quarantined and not outcome.stored
    new = records.signed(43, device_id="kp-b02-01", key=bytes.fromhex(new_key))
    outcome = ingestor.process(
        records.ev_topic("kp-b02-01"), records.batch([new], 2, device_id="kp-b02-01")
    )
    assert outcome.stored == [43]

    # ratings still queued on the board (signed with the current key): refused,
    # since with a new key they would all be quarantined
    # A well-formed line the firmware keeps whatever it does meanwhile: a damaged
    # one would be cut off by a firmware booting after this write, and a record of
    # this device might be acked away; one claiming another device stays unacked.
    journal = board.root / "data" / "journal"
    line = device_store._line({"a": records.signed(44, device_id="kp-zz")})
    journal.write_bytes(line)
    key_now = device_row(engine, "kp-b02-01").key_hex
    run, _ = hcp(*args, "--reprovision")
    assert run.returncode == 1
    assert run.stderr.strip() == (
        "错误 error: 板子上还有未上传的评价 / the board still holds unsent ratings "
        f"({len(line)} B in /data/journal), signed with the old key: let it send them first "
        "(its status on the devices page shows the queue)"
    )
    assert device_row(engine, "kp-b02-01").key_hex == key_now

    # a wiped board (no state) re-provisioned: no state written, the keypad asks (§3.6)
    for name in ("state", "journal"):
        (board.root / "data" / name).unlink(missing_ok=True)
    run, _ = hcp(*args, "--reprovision")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "none: the keypad asks the collector" in run.stdout
    # provisioning wrote no state: the firmware, booted again, opened its store
    # not known (it asks the collector for the highest seq before it rates)
    assert not state_path.exists() or json.loads(state_path.read_text())["known"] is False


def test_offline_bundle_then_reconcile(virtual_board, collector, tmp_path):
    engine, url = collector
    bundle = tmp_path / "bundle.json"
    run, _ = hcp(
        "provision",
        "bundle",
        "--db",
        url,
        "--count",
        "2",
        "--out",
        str(bundle),
        "--broker-host",
        "127.0.0.1",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert oct(bundle.stat().st_mode & 0o777) == "0o600"  # secret
    data = json.loads(bundle.read_text())
    ids = [entry["device_id"] for entry in data["devices"]]
    for device_id in ids:  # registered, no window yet
        row = device_row(engine, device_id)
        assert row is not None and row.window_id is None

    # a board without the firmware and no --flash: refused before the entry is used
    run, _ = hcp(
        "provision", "--bundle", str(bundle), "--port", virtual_board.port, "--window", "V07"
    )
    assert run.returncode == 1
    assert run.stderr.strip() == (
        "错误 error: 板子上没有 hcp 固件 / the board has no hcp firmware: add --flash"
    )
    assert json.loads(bundle.read_text()) == data

    # in the village: no database, no network
    run, seconds = hcp(
        "provision",
        "--bundle",
        str(bundle),
        "--port",
        virtual_board.port,
        "--window",
        "V07",
        "--flash",
        *OFFLINE_SETTINGS,
    )
    print(f"offline provisioning with --flash took {seconds:.2f} s")
    assert run.returncode == 0, run.stdout + run.stderr
    config = json.loads((virtual_board.root / "data" / "config.json").read_text())
    first = data["devices"][0]
    assert (config["device_id"], config["key"], config["broker_host"]) == (
        first["device_id"],
        first["key"],
        "127.0.0.1",
    )
    after = json.loads(bundle.read_text())
    assert after["devices"][0]["used"]["window"] == "V07"
    assert after["devices"][1]["used"] is None

    run, _ = hcp("provision", "reconcile", "--bundle", str(bundle), "--db", url)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{ids[0]} → 窗口 window V07" in run.stdout
    assert "已绑定 / bound: 1; 未使用 / unused: 1" in run.stdout
    assert f"未使用 unused: {ids[1]}" in run.stdout
    assert device_row(engine, ids[0]).window_id == "V07"
    assert device_row(engine, ids[1]).window_id is None


def test_unknown_bundle(collector, tmp_path, capsys):
    _engine, url = collector
    assert (
        hcp_main(["provision", "reconcile", "--bundle", str(tmp_path / "none.json"), "--db", url])
        == 1
    )
    assert capsys.readouterr().err.strip() == (
        f"错误 error: 找不到凭据包 / no bundle at {tmp_path / 'none.json'}"
    )
    other = tmp_path / "other.json"
    other.write_text(
        json.dumps(
            {
                "format": "hcp-provision-bundle",
                "version": 1,
                "devices": [{"device_id": "kp-elsewhere", "key": "00" * 32, "used": None}],
            }
        )
    )
    assert hcp_main(["provision", "reconcile", "--bundle", str(other), "--db", url]) == 1
    assert capsys.readouterr().err.strip() == (
        "错误 error: 未知的凭据包 / unknown bundle: none of the 1 ids in "
        f"{other} is registered with this collector"
    )


def test_no_serial_port(collector, capsys):
    from serial.tools import list_ports

    if any(p.vid is not None for p in list_ports.comports()):
        pytest.skip("this machine has USB serial ports: the refusal cannot be seen here")
    _engine, url = collector
    args = ["provision", "--db", url, "--device-id", "kp-x", "--window", "A01"]
    assert hcp_main([*args, "--broker-host", "127.0.0.1"]) == 1
    assert capsys.readouterr().err.strip() == (
        "错误 error: 没有找到 USB 串口 / no USB serial port found: connect the board by USB, "
        "or give --port"
    )


def test_a_board_that_does_not_answer(collector, capsys):
    _engine, url = collector
    master, slave = pty.openpty()  # a serial port with nothing behind it
    try:
        port = os.ttyname(slave)
        args = ["provision", "--port", port, "--db", url, "--device-id", "kp-x", "--window", "A1"]
        code = hcp_main([*args, "--broker-host", "127.0.0.1", "--answer-timeout", "1"])
        assert code == 1
        assert capsys.readouterr().err.strip() == (
            f"错误 error: 板子没有应答 / the board on {port} does not answer: no MicroPython "
            "REPL within 1 s (is MicroPython installed, is another program using the port?)"
        )
    finally:
        os.close(master)
        os.close(slave)
    assert device_row(_engine, "kp-x") is None  # nothing registered


def test_broker_auth_dir_lets_the_new_device_in(virtual_board, collector, tmp_path):
    """A broker locked down by broker-auth (two collector logins): provisioning
    rewrites passwd and acl and sends the test's own Mosquitto SIGHUP; the
    keypad logs in with its new key, the watch uses the second collector
    login, and the running collector is not pushed off."""
    from hcp.broker import MosquittoBroker, free_port
    from sync_server import broker_auth
    from sync_server.ingest import IngestService
    from tests.harness.broker import require_kind

    require_kind("mosquitto")
    engine, url = collector
    password = "collector-secret-1"
    auth_dir = tmp_path / "auth"
    port = free_port()
    broker_auth.write_files(
        auth_dir, db.device_keys(engine), password, port, "127.0.0.1", collectors=2
    )
    conf_before = (auth_dir / broker_auth.CONF_NAME).read_text()
    broker = MosquittoBroker(workdir=tmp_path / "broker", auth_dir=auth_dir).start()
    service = IngestService(engine, broker.host, broker.port, client_id=broker_auth.COLLECTOR_USER,
                            username=broker_auth.COLLECTOR_USER, password=password)  # fmt: skip
    disconnects = []
    on_disconnect = service.client.on_disconnect

    def record_disconnect(client, userdata, flags, reason_code, props):
        disconnects.append(reason_code)
        on_disconnect(client, userdata, flags, reason_code, props)

    service.client.on_disconnect = record_disconnect
    service.start()
    try:
        run, _ = hcp(
            "provision",
            "--port",
            virtual_board.port,
            "--db",
            url,
            "--device-id",
            "kp-c03-01",
            "--window",
            "C03",
            "--broker-host",
            broker.host,
            "--broker-port",
            str(broker.port),
            "--mqtt",
            f"mqtt://hcp-collector-2:{password}@{broker.host}:{broker.port}",
            "--broker-auth-dir",
            str(auth_dir),
            "--collector-password",
            password,
            "--collectors",
            "2",
            "--broker-pid",
            str(broker._proc.pid),
            "--flash",
            "--timeout",
            "30",
            *OFFLINE_SETTINGS,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "设备已上线 / kp-c03-01 is online" in run.stdout
        assert "kp-c03-01:" in (auth_dir / "passwd").read_text()
        assert (auth_dir / broker_auth.CONF_NAME).read_text() == conf_before
        deadline = time.monotonic() + 15
        while device_row(engine, "kp-c03-01").last_seen is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert json.loads(device_row(engine, "kp-c03-01").status)["online"] is True
        assert disconnects == []
    finally:
        service.stop()
        broker.stop()


def test_a_running_collector_takes_the_new_key(
    virtual_board, mosquitto_broker, collector, tmp_path
):
    import paho.mqtt.client as mqtt

    from sync_server.ingest import IngestService

    engine, url = collector
    service = IngestService(engine, mosquitto_broker.host, mosquitto_broker.port)
    service.start()
    try:
        args = [
            "provision", "--port", virtual_board.port, "--db", url,
            "--device-id", "kp-d04-01", "--window", "D04",
            "--broker-host", mosquitto_broker.host,
            "--broker-port", str(mosquitto_broker.port),
            "--timeout", "30", *OFFLINE_SETTINGS,
        ]  # fmt: skip
        run, _ = hcp(*args, "--flash")
        assert run.returncode == 0, run.stdout + run.stderr
        deadline = time.monotonic() + 15  # the collector has seen it (and its key)
        while device_row(engine, "kp-d04-01").last_seen is None and time.monotonic() < deadline:
            time.sleep(0.1)
        run, _ = hcp(*args, "--reprovision")
        assert run.returncode == 0, run.stdout + run.stderr
        new_key = bytes.fromhex(device_row(engine, "kp-d04-01").key_hex)
        # a record signed with the new key, as the re-provisioned keypad sends it
        rec = records.signed(7, device_id="kp-d04-01", key=new_key)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="kp-d04-01-test")
        client.connect(mosquitto_broker.host, mosquitto_broker.port)
        client.loop_start()
        client.publish(
            records.ev_topic("kp-d04-01"), records.batch([rec], 1, "kp-d04-01"), qos=1
        ).wait_for_publish(10)
        client.loop_stop()
        client.disconnect()

        def outcome():
            with engine.connect() as conn:
                stored = conn.execute(
                    select(db.evaluations.c.id).where(db.evaluations.c.id == "kp-d04-01:7")
                ).first()
                kept = conn.execute(
                    select(db.quarantine.c.reason).where(db.quarantine.c.device_id == "kp-d04-01")
                ).first()
            return stored, kept

        deadline = time.monotonic() + 15
        while outcome() == (None, None) and time.monotonic() < deadline:
            time.sleep(0.1)
        stored, kept = outcome()
        assert kept is None, kept.reason
        assert stored is not None
    finally:
        service.stop()
