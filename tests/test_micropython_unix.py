"""The keypad firmware under MicroPython's 32-bit unix port, with a real heap limit.

The firmware of device/, hardware/ and protocols/ runs under `micropython32
-X heapsize=<HEAPSIZE>` with the stand-ins of tests/harness/mp_unix_board/ for
`machine` and `network`, in two forms:

* plain: compiled with mpy-cross into .mpy files on the "file system", as
  `mpremote mip install` leaves a board; their bytecode and strings are loaded
  onto the heap (about 66 KB of it for the firmware of 2026-11-27);
* frozen: built into the port by tools/manifest.py, as a board image built
  with tools/board_manifest.py; bytecode and strings stay in the image.

It makes RATINGS ratings while its Wi-Fi link is down, then the link comes up
and it drains them in batches of BATCH_SIZE through a real Mosquitto to a
real collector (IngestService on SQLite). Every rating must be stored there
and acked (the device's store empty). The peak heap and the firmware's .mpy
size are printed (`pytest -s` not needed); tests/harness/micropython_unix.py
says how they are measured, how the ports are built (skipped where ../shared
is absent), and what the smallest passing heaps were.

The target (an ESP32 without PSRAM): 300 ratings in batches of 50 within
96K, which the frozen firmware meets (it needed 55K on 2026-11-27). The plain
build needed 118K for the same and is held to PLAIN_300.
"""

import importlib.util
import io
import json
import os
import secrets
import shutil
import tarfile
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from sync_server import db
from sync_server.ingest import IngestService
from tests.harness import micropython_unix
from tests.harness.broker import assert_access_control
from tests.harness.collector import provision
from tests.harness.micropython_unix import run_keypad
from tools import mip_package

ROOT = Path(__file__).resolve().parent.parent

HEAPSIZE = "256K"  # micropython32 -X heapsize=...
RATINGS = 60  # made with the link down, then drained
BATCH_SIZE = 10  # records per batch (the device setting batch_size)
TARGET = {"heapsize": "96K", "ratings": 300, "batch_size": 50}  # frozen firmware
PLAIN_300 = {"heapsize": "128K", "ratings": 300, "batch_size": 50}  # .mpy files

DEVICE_ID = "kp-mpu"
RUN_TIMEOUT_S = 50  # the whole MicroPython process; drain_timeout is inside it
DRAIN_TIMEOUT_MS = 30000


@pytest.fixture(scope="module")
def mosquitto_broker(secured_mosquitto):
    """Mosquitto with access control on, as in production: the firmware logs
    in with its id and derived password whatever the broker (so the heap
    figures mean what they meant on the open broker), the collector with its
    login, the commands go out with the fleet agent's."""
    return secured_mosquitto


@pytest.fixture
def collector(mosquitto_broker, tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'collector.db'}")
    db.init(engine)
    user, password = mosquitto_broker.collector_login()
    service = IngestService(engine, mosquitto_broker.host, mosquitto_broker.port,
                            client_id="collector-mpu", username=user,
                            password=password)  # fmt: skip
    service.start()
    yield service
    service.stop()
    engine.dispose()


def stored_ids(collector):
    with collector.ingestor.engine.connect() as conn:
        return (
            conn.execute(select(db.evaluations.c.id).order_by(db.evaluations.c.seq)).scalars().all()
        )


def rate_offline_then_drain(
    micropython32, firmware_image, collector, broker, tmp_path, capsys, **figures
):
    heapsize, ratings, batch_size = figures["heapsize"], figures["ratings"], figures["batch_size"]
    form = "frozen" if firmware_image.lib is None else ".mpy files"
    key_hex = secrets.token_hex(32)
    provision(broker, collector.ingestor.engine, DEVICE_ID, key_hex)
    settings = {
        "device_id": DEVICE_ID,
        "key": key_hex,
        "broker_host": collector.host,  # the collector's broker
        "broker_port": collector.port,
        "data_dir": str(tmp_path / "flash"),
        "board": "sim",
        "batch_size": batch_size,
        "timeout_ms": 3000,
    }
    run = run_keypad(
        micropython32,
        firmware_image,
        tmp_path / "job",
        heapsize,
        settings,
        ratings,
        drain_timeout_ms=DRAIN_TIMEOUT_MS,
        timeout=RUN_TIMEOUT_S,
    )
    result = run.result
    booted = next((e for e in run.events if e["event"] == "booted"), {})
    imported = next((e for e in run.events if e["event"] == "imported"), {})
    sizes = ", ".join(f"{name} {size}" for name, size in firmware_image.mpy_bytes.items())
    with capsys.disabled():
        print(
            f"\n[micropython32 -X heapsize={heapsize}, firmware {form}] {ratings} ratings offline, "
            f"batches of {batch_size}: {result.get('event')}"
            + (
                f" ({result['error']} in {result['phase']}, after {result['made']} ratings)"
                if "error" in result
                else ""
            )
            + f"; peak heap {result.get('peak_step')} B (live between steps "
            f"{result.get('peak_live')} B); drained in {result.get('drain_ms')} ms, "
            f"run {run.seconds:.1f} s; live after the imports {imported.get('live')} B, after "
            f"build() {booted.get('live')} B; firmware .mpy {firmware_image.total_bytes} B ({sizes})"
        )
    run.check()
    if firmware_image.lib is None:  # imported from the port's frozen modules
        assert imported["main"] == "device/main.py", run.describe()
    else:
        assert imported["main"] == str(firmware_image.lib / "device" / "main.mpy")
    offline = run.event("offline")
    assert (offline["pending"], offline["batches_sent"], offline["connected"]) == (
        ratings,
        0,
        False,
    ), "with the link down the ratings stay on the device"
    assert (result["made"], result["pending"]) == (ratings, 0), run.describe()
    assert result["bad_messages"] == 0
    expected = [f"{DEVICE_ID}:{seq}" for seq in range(1, ratings + 1)]
    deadline = time.monotonic() + 5
    while stored_ids(collector) != expected and time.monotonic() < deadline:
        time.sleep(0.05)  # acked means committed; this only absorbs a slow reader
    assert stored_ids(collector) == expected
    return result


@pytest.mark.broker
def test_ratings_made_offline_drain_to_the_collector_within_the_heap(
    micropython32, firmware_image, collector, mosquitto_broker, tmp_path, capsys
):
    rate_offline_then_drain(
        micropython32,
        firmware_image,
        collector,
        mosquitto_broker,
        tmp_path,
        capsys,
        heapsize=HEAPSIZE,
        ratings=RATINGS,
        batch_size=BATCH_SIZE,
    )


@pytest.mark.broker
@pytest.mark.long  # building the frozen port takes about 30 s; `hcp bench --only heap` measures it
def test_the_target_300_ratings_in_batches_of_50_within_96k_frozen(
    frozen_port, collector, mosquitto_broker, tmp_path, capsys
):
    rate_offline_then_drain(frozen_port.binary, frozen_port.image, collector, mosquitto_broker,
                            tmp_path, capsys, **TARGET)  # fmt: skip


@pytest.mark.broker
def test_300_ratings_in_batches_of_50_from_mpy_files(
    micropython32, firmware_image, collector, mosquitto_broker, tmp_path, capsys
):
    """The same as the target with the firmware's .mpy files on the file system:
    their bytecode is on the heap, so it needs more than 96K."""
    rate_offline_then_drain(micropython32, firmware_image, collector, mosquitto_broker,
                            tmp_path, capsys, **PLAIN_300)  # fmt: skip


@pytest.fixture
def without_shared(monkeypatch, tmp_path):
    """The harness as it is on a machine without ../shared."""
    monkeypatch.setattr(micropython_unix, "BUILD_SCRIPT", tmp_path / "shared" / "build.sh")
    monkeypatch.setattr(micropython_unix, "_failure", None)
    micropython_unix._build_once.cache_clear()
    yield
    micropython_unix._build_once.cache_clear()


def test_without_shared_the_tests_skip_and_say_why(without_shared, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"build\.sh is absent \(no \.\./shared"):
        micropython_unix.require_micropython32()


def test_in_ci_a_missing_port_fails_instead_of_skipping(without_shared, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: .*is absent"):
        micropython_unix.require_micropython32()


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_failed_build_fails_in_ci_and_skips_elsewhere(without_shared, monkeypatch, tmp_path, ci):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "build.sh").write_text("echo 'cc: error: no 32-bit libc' >&2\nexit 2\n")
    (shared / "micropython-9.9.9-src.tar.xz").write_bytes(b"")
    monkeypatch.setattr(micropython_unix, "SHARED_DIR", shared)
    monkeypatch.setattr(micropython_unix, "BUILD_SCRIPT", shared / "build.sh")
    monkeypatch.setattr(micropython_unix, "CACHE_ROOT", tmp_path / "cache")
    monkeypatch.setenv("CI", ci)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match=r"failed \(exit 2\).*gcc-multilib(.|\n)*no 32-bit libc"):
        micropython_unix.require_micropython32()
    assert not (tmp_path / "cache" / "9.9.9").exists()


def test_without_shared_the_frozen_port_skips_and_says_why(without_shared, monkeypatch):
    monkeypatch.setattr(micropython_unix, "_frozen", {})
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"build\.sh is absent \(no \.\./shared"):
        micropython_unix.require_frozen_micropython32()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: .*is absent"):
        micropython_unix.require_frozen_micropython32()


def _tarball_with(path, files):
    with tarfile.open(path, "w:xz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_failed_frozen_build_fails_in_ci_and_skips_elsewhere(
    without_shared, monkeypatch, tmp_path, ci
):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "build.sh").write_text("exit 0\n")
    # a source tree whose mpy-cross does not build
    failing = "all:\n\t@echo 'cc: error: no 32-bit libc' >&2; exit 2\n"
    _tarball_with(shared / "micropython-9.9.9-src.tar.xz", {"mpy-cross/Makefile": failing})
    monkeypatch.setattr(micropython_unix, "SHARED_DIR", shared)
    monkeypatch.setattr(micropython_unix, "BUILD_SCRIPT", shared / "build.sh")
    monkeypatch.setattr(micropython_unix, "CACHE_ROOT", tmp_path / "cache")
    monkeypatch.setattr(micropython_unix, "_frozen", {})
    monkeypatch.setenv("CI", ci)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(
        outcome, match=r"building mpy-cross failed \(exit 2\).*gcc-multilib(.|\n)*no 32-bit libc"
    ):
        micropython_unix.require_frozen_micropython32()
    left = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.is_dir())
    assert left == [], "nothing half-built is kept, no work or snapshot folder left behind"


def test_old_frozen_builds_go_once_unused_for_an_hour(monkeypatch, tmp_path):
    monkeypatch.setattr(micropython_unix, "CACHE_ROOT", tmp_path)
    now = time.time()
    ages = {"d": 600, "f": 1200, "g": 1800, "c": 7200, "b": 7300, "a": 7400}
    for name, age in {**ages, "new": 0}.items():
        (tmp_path / f"1.28.0-frozen-{name}").mkdir()
        (tmp_path / f"1.28.0-frozen-{name}.lock").touch()
        os.utime(tmp_path / f"1.28.0-frozen-{name}", (now - age, now - age))
    (tmp_path / "1.28.0").mkdir()  # the plain build is never touched
    micropython_unix._prune_frozen("1.28.0", tmp_path / "1.28.0-frozen-new")
    left = sorted(p.name for p in tmp_path.iterdir())
    # the new one, the two newest others, and one used within the hour; the rest go
    kept = ["1.28.0", *(f"1.28.0-frozen-{n}" for n in "dfg"), "1.28.0-frozen-new"]
    locks = [f"1.28.0-frozen-{n}.lock" for n in ("d", "f", "g", "new")]
    assert left == sorted(kept + locks)


# --- the manifest: the same files as package.json ---------------------------------------


def makemanifest_module(tmp_path):
    """MicroPython's own tools/manifestfile.py (what makemanifest.py runs a
    manifest with), taken from the source tarball beside build.sh."""
    if not micropython_unix.BUILD_SCRIPT.is_file():
        reason = f"{micropython_unix.BUILD_SCRIPT} is absent: no MicroPython tools to read it with"
        if micropython_unix.in_ci():
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    with tarfile.open(micropython_unix._source_tarball()) as tar:
        source = tar.extractfile("tools/manifestfile.py").read()
    path = tmp_path / "manifestfile.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("manifestfile", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def frozen_files(manifestfile, manifest, **path_vars):
    variables = {"MPY_LIB_DIR": None, "MPY_DIR": None, "PORT_DIR": None, "BOARD_DIR": None}
    variables.update(path_vars)
    reader = manifestfile.ManifestFile(manifestfile.MODE_FREEZE, variables)
    cwd = os.getcwd()
    try:
        reader.execute(str(manifest))
    finally:
        os.chdir(cwd)  # execute() changes directory while it reads
    return [(f.target_path, Path(f.full_path)) for f in reader.files()]


def test_the_manifest_freezes_exactly_the_files_of_package_json(tmp_path):
    listed = json.loads((ROOT / "package.json").read_text())["urls"]
    frozen = frozen_files(makemanifest_module(tmp_path), micropython_unix.MANIFEST)
    assert frozen == [(target, ROOT / source) for target, source in listed]
    # and package.json is what tools/mip_package.py makes of the source tree
    assert [target for target, _ in frozen] == mip_package.device_files()
    assert micropython_unix.frozen_sources() == [target for target, _ in frozen]


def test_a_board_image_adds_the_ports_own_modules(tmp_path):
    port = tmp_path / "ports" / "esp32"
    (port / "modules").mkdir(parents=True)
    (port / "modules" / "_boot.py").write_text("import inisetup\n")
    (port / "boards").mkdir()
    (port / "boards" / "manifest.py").write_text('module("_boot.py", base_path="../modules")\n')
    manifestfile = makemanifest_module(tmp_path)
    board = frozen_files(manifestfile, ROOT / "tools" / "board_manifest.py", PORT_DIR=str(port))
    firmware = frozen_files(manifestfile, micropython_unix.MANIFEST)
    assert board == [("_boot.py", port / "modules" / "_boot.py")] + firmware


def test_a_manifest_refuses_a_file_installed_under_another_name(tmp_path):
    tools = tmp_path / "tools"
    tools.mkdir()
    shutil.copy(micropython_unix.MANIFEST, tools / "manifest.py")
    (tmp_path / "package.json").write_text(
        json.dumps({"urls": [["device/app.py", "src/app.py"]], "deps": [], "version": "0"})
    )
    with pytest.raises(Exception, match="package.json installs src/app.py as device/app.py"):
        frozen_files(makemanifest_module(tmp_path), tools / "manifest.py")


def test_every_string_of_the_firmware_can_be_frozen_by_micropythons_tools():
    assert micropython_unix.unfreezable_strings(ROOT, micropython_unix.frozen_sources()) == []


@pytest.mark.broker
def test_offline_ratings_reconnects_and_commands_on_the_unix_port(
    micropython32, firmware_image, collector, mosquitto_broker, tmp_path
):
    """Two rounds of ratings made with the link down and drained (a reconnect
    each), then the collector's signed commands: `status` is answered with the
    device's counters, `sync_now` is run; a forged command is ignored."""
    import json
    import threading

    import paho.mqtt.client as mqtt

    from protocols import messages, topics

    key_hex = secrets.token_hex(32)
    key = bytes.fromhex(key_hex)
    provision(mosquitto_broker, collector.ingestor.engine, DEVICE_ID, key_hex)
    assert_access_control(mosquitto_broker, (DEVICE_ID, key_hex))
    answers = {}
    stop = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="commander")
    client.username_pw_set(*mosquitto_broker.fleet_login())  # the fleet agent sends commands
    client.on_message = lambda _c, _u, m: answers.setdefault(
        json.loads(m.payload)["id"], json.loads(m.payload)
    )
    client.connect(mosquitto_broker.host, mosquitto_broker.port)
    client.loop_start()
    client.subscribe(topics.topic(DEVICE_ID, topics.UP_CMDRES), 1)[0]
    commands = [
        messages.encode_signed(messages.command("c-status", "status"), key),
        messages.encode_signed(messages.command("c-sync", "sync_now"), key),
        messages.encode_signed(messages.command("c-forged", "reboot"), b"f" * 32),
    ]

    def command_until_answered():
        # a command published before the keypad's first session is dropped by the
        # broker; sent again (same id) until answered: a repeat is answered, not rerun
        while not stop.is_set() and not {"c-status", "c-sync"} <= set(answers):
            for payload in commands:
                client.publish(topics.topic(DEVICE_ID, topics.DOWN_CMD), payload, qos=1)
            stop.wait(0.5)

    sender = threading.Thread(target=command_until_answered, daemon=True)
    sender.start()
    settings = {
        "device_id": DEVICE_ID,
        "key": key_hex,
        "broker_host": collector.host,
        "broker_port": collector.port,
        "data_dir": str(tmp_path / "flash"),
        "board": "sim",
        "batch_size": 10,
        "timeout_ms": 3000,
    }
    try:
        run = run_keypad(micropython32, firmware_image, tmp_path / "job", HEAPSIZE, settings,
                         20, drain_timeout_ms=DRAIN_TIMEOUT_MS, timeout=RUN_TIMEOUT_S,
                         cycles=2, await_commands=1)  # fmt: skip
    finally:
        stop.set()
        sender.join(5)
        client.disconnect()
        client.loop_stop()
    run.check()
    assert [e["pending"] for e in run.events if e["event"] == "cycle"] == [0, 0]
    assert run.result["made"] == 40 and run.result["bad_messages"] >= 1  # the forged one
    # sync_now goes through device.commands (status is answered by sync itself)
    assert run.event("commands")["done"] == [["c-sync", True]]
    status = answers["c-status"]
    # answered at the first drain that saw the command (after 20 or after 40 ratings)
    made = status["result"]["last_seq"]
    assert status["ok"] is True and made in (20, 40)
    assert status["result"]["counts"] == {str(stars): made // 5 for stars in range(1, 6)}
    assert answers["c-sync"]["ok"] is True and "c-forged" not in answers
    assert stored_ids(collector) == [f"{DEVICE_ID}:{seq}" for seq in range(1, 41)]
