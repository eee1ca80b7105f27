"""The keypad's main loop survives: crashes caught and kept on flash, the
watchdog, safe mode, Wi-Fi rejoin, the littlefs check, small files by rename,
a full flash, and the status extras (issue 6)."""

import json
import sys
import threading
import time
import types
import unittest.mock

import pytest

import device.app as device_app
import device.main as device_main
from device import config as device_config
from device.app import FULL_TEXT, KeypadApp
from device.main import CRASH_FILE, CrashLog, build
from device.startup import filesystem_problem, held_at_boot
from device.store import StorageFull, Store
from hardware.boards import sim as sim_board
from protocols import levels, messages, serial
from simulators.keypad import SimKeypad
from simulators.machine import SimMachine
from simulators.network import SimNetwork
from tests.harness.records import seeded

KEY_HEX = "6b" * 32
PERIOD = 1 << 30
HALF = PERIOD // 2


def wrap_add(ticks, delta):
    return (ticks + delta) % PERIOD


def wrap_diff(later, earlier):
    return (later - earlier + HALF) % PERIOD - HALF


def settings(tmp_path, **overrides):
    values = {
        "device_id": "kp-01",
        "key": KEY_HEX,
        "broker_host": "127.0.0.1",
        "broker_port": 1,  # nothing listens: sync never gets far
        "data_dir": str(tmp_path / "data"),
        "board": "sim",
        "timeout_ms": 200,
    }
    values.update(overrides)
    return device_config.load(None, values)


def boot(tmp_path, machine=None, network=None, link=False, provisioned=True, **overrides):
    network = network or SimNetwork()
    network.link_up = link
    values = settings(tmp_path, **overrides)
    if provisioned:
        seeded(values["data_dir"])
    return build(
        machine or SimMachine(),
        network,
        sim_board,
        values,
        wall_clock=lambda: (1764145800, "ntp"),
        check_filesystem=False,
    )


def crash_file(tmp_path):
    return json.loads((tmp_path / "data" / CRASH_FILE).read_text())


def encoded_status(dev):
    return json.loads(messages.encode(dev.status()))


# --- nothing escapes the main loop -------------------------------------------


def test_an_exception_in_a_pass_is_caught_counted_and_kept_on_flash(tmp_path):
    dev = boot(tmp_path)
    dev.app.tick = unittest.mock.Mock(side_effect=KeyError("x" * 500))
    pause = dev.run_once(1000)
    assert pause > device_main.LOOP_MS and dev.failures == 1
    saved = crash_file(tmp_path)
    assert saved["crashes"] == 1
    (text,) = saved["last"]
    assert text.startswith("app: KeyError: ") and len(text) == 120
    status = encoded_status(dev)
    assert status["crashes"] == 1 and status["last_error"] == text


def test_the_crash_file_keeps_the_last_four_and_the_count_survives_a_reboot(tmp_path):
    dev = boot(tmp_path)
    for n in range(6):
        dev.sync.step = unittest.mock.Mock(side_effect=OSError(100 + n))
        dev.wlan.isconnected = lambda: True
        dev.run_once(n * 10)
    saved = crash_file(tmp_path)
    assert saved["crashes"] == 6
    assert saved["last"] == [f"sync: OSError: {100 + n}" for n in range(2, 6)]
    again = boot(tmp_path)  # the count is since provisioning, not since boot
    assert again.crash_log.count == 6 and encoded_status(again)["crashes"] == 6
    assert not (tmp_path / "data" / (CRASH_FILE + ".tmp")).exists()


def test_a_pass_that_keeps_failing_backs_off_and_recovers(tmp_path):
    dev = boot(tmp_path, loop_backoff_max_ms=1500)
    dev.keys.scan = unittest.mock.Mock(side_effect=RuntimeError("bad pin"))
    pauses = [dev.run_once(t) for t in range(0, 20000, 1000)]
    assert pauses[:4] == [20, 40, 80, 160]
    assert max(pauses) == 1500 and pauses[-1] == 1500
    dev.keys.scan = lambda now: []
    assert dev.run_once(30000) == device_main.LOOP_MS and dev.failures == 0


def test_the_same_error_over_and_over_is_not_written_on_every_pass(tmp_path):
    log = CrashLog(str(tmp_path / CRASH_FILE), write_every_ms=60000)
    base = PERIOD - 30000  # and across the tick wrap
    with unittest.mock.patch.object(device_main, "ticks_diff", wrap_diff):
        log.note("sync: OSError: 113", base)
        for n in range(1, 50):
            log.note("sync: OSError: 113", wrap_add(base, n * 1000))
        assert json.loads((tmp_path / CRASH_FILE).read_text())["crashes"] == 1
        log.note("sync: OSError: 113", wrap_add(base, 60000))  # a minute on: written
        assert json.loads((tmp_path / CRASH_FILE).read_text())["crashes"] == 51
        log.note("app: ValueError", wrap_add(base, 60001))  # a new error: at once
    saved = json.loads((tmp_path / CRASH_FILE).read_text())
    assert saved["crashes"] == 52 and saved["last"][-1] == "app: ValueError"
    assert log.count == 52 and log.last_error == "app: ValueError"


def test_a_damaged_or_odd_crash_file_does_not_stop_the_boot(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / CRASH_FILE).write_text('{"crashes": -3, "last": [7, "a\\nb"]}')
    dev = boot(tmp_path)
    assert dev.mode == "normal" and dev.crash_log.count == 0
    assert dev.crash_log.entries == ["a b"]
    (tmp_path / "data" / CRASH_FILE).write_text("{torn")
    assert boot(tmp_path).crash_log.count == 0


def test_a_start_that_fails_is_noted_and_halts_instead_of_boot_looping(tmp_path):
    # the journal cannot be read (a file system gone wrong: here a folder in its
    # place); a state that does not parse no longer stops a boot (the seqs are
    # learned again, tests/test_device_store.py)
    (tmp_path / "data" / "journal").mkdir(parents=True)
    dev = boot(tmp_path)
    assert dev.mode == "failed" and dev.screen()[0] == "启动失败"
    assert crash_file(tmp_path)["last"][0].startswith("boot: ")
    assert dev.run_once(10) == device_main.LOOP_MS  # it keeps running, taking no ratings
    status = encoded_status(dev)
    assert status["crashes"] == 1 and status["safe_mode"] is False


# --- the watchdog --------------------------------------------------------------


def test_sim_wdt_resets_the_board_only_when_it_is_not_fed():
    machine = SimMachine()
    resets = []
    machine.on_reset.append(resets.append)
    wdt = machine.WDT(timeout=200)
    for _ in range(8):  # fed well within its timeout for 0.4 s
        time.sleep(0.05)
        wdt.feed()
    assert resets == [] and machine.reset_cause() == machine.PWRON_RESET
    time.sleep(0.5)  # not fed
    assert resets == [machine.WDT_RESET] and machine.resets == 1
    assert machine.reset_cause() == machine.WDT_RESET and machine.watchdog is None


def test_a_hung_loop_is_reset_by_the_watchdog_and_the_keypad_boots_again(tmp_path):
    keypad = SimKeypad(
        "kp-01", KEY_HEX, "127.0.0.1", 1, str(tmp_path / "data"), watchdog=True, watchdog_ms=300
    )
    keypad.network.link_up = False
    keypad.start()
    try:
        time.sleep(0.6)  # a loop that runs feeds it: no reset
        assert keypad.machine.resets == 0 and keypad.boots == 1
        first = keypad.device
        hang = threading.Event()

        def stuck_scan(now_ms):
            hang.wait(10)  # a driver that never returns
            return []

        first.keys.scan = stuck_scan
        deadline = time.monotonic() + 5
        while keypad.boots < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert keypad.boots == 2 and keypad.machine.resets == 1
        assert keypad.device is not first and keypad.device.mode == "normal"
        status = keypad.call(lambda d: d.status())
        assert status["reset_cause"] == "watchdog"
        keypad.network.link_up = False
        keypad.rate(4)  # the new boot takes ratings
        assert keypad.pending() == 1
    finally:
        keypad.stop()
        hang.set()
    assert keypad.machine.watchdog is None


def test_no_watchdog_without_the_port_or_in_safe_mode(tmp_path):
    machine = SimMachine()
    dev = boot(tmp_path, machine=machine)
    del machine.WDT
    assert device_main.start_watchdog(dev, machine) is None
    dev.mode = "safe"
    assert device_main.start_watchdog(dev, SimMachine()) is None


# --- safe mode -----------------------------------------------------------------


def test_key_0_held_at_boot_starts_safe_mode(tmp_path):
    keypad = SimKeypad(
        "kp-01", KEY_HEX, "127.0.0.1", 1, str(tmp_path / "data"), safe_mode_hold_ms=150
    )
    keypad.hold_key_at_boot(0)
    started = time.monotonic()
    keypad.start()
    try:
        assert time.monotonic() - started >= 0.15
        dev = keypad.device
        assert dev.mode == "safe" and dev.safe_mode
        assert dev.screen() == ("安全模式", "暂停评价", "请联系技术人员")
        assert dev.store is None and dev.sync is None and dev.app is None
        keypad.release_key(0)
        keypad.press_key(4)  # no ratings
        status = keypad.call(lambda d: d.status())
        messages.check(status)
        assert status["safe_mode"] is True and "queue" not in status
        assert not (tmp_path / "data" / "journal").exists()
        assert keypad.errors == [] and keypad.network.connects == 0
    finally:
        keypad.stop()


def test_a_key_let_go_before_the_hold_time_starts_normally(tmp_path):
    readings = iter([0, 0, 0, 1])  # pressed for three reads, then released

    def pin():
        return next(readings, 1)

    assert held_at_boot(pin, 0, 10000) is False
    assert held_at_boot(lambda: 1, 0, 10000) is False  # not pressed: no wait at all
    assert held_at_boot(lambda: 0, 0, 0) is False  # safe mode turned off
    assert held_at_boot(lambda: 0, 0, 30) is True
    assert boot(tmp_path).mode == "normal"  # keys released at boot


# --- Wi-Fi -------------------------------------------------------------------------


@pytest.mark.parametrize("base", [0, PERIOD - 400000])
def test_wifi_is_rejoined_with_backoff_and_jitter_across_the_tick_wrap(tmp_path, base):
    network = SimNetwork()
    with (
        unittest.mock.patch.multiple(
            device_main, ticks_add=wrap_add, ticks_diff=wrap_diff, ticks_ms=lambda: base
        ),
        unittest.mock.patch.multiple(device_app, ticks_add=wrap_add, ticks_diff=wrap_diff),
    ):
        dev = boot(
            tmp_path,
            network=network,
            wifi_ssid="hall",
            wifi_password="pw",
            wifi_retry_ms=1000,
            wifi_retry_max_ms=16000,
        )
        assert network.connects == 1  # the first join, at boot
        joins = [0]
        for t in range(0, 1200000, 50):
            before = network.connects
            dev.step(wrap_add(base, t))
            if network.connects != before:
                joins.append(t)
    gaps = [b - a for a, b in zip(joins, joins[1:], strict=False)]
    for n, gap in enumerate(gaps[:6]):
        delay = min(1000 << n, 16000)
        assert delay <= gap <= delay + delay // 2 + 50, (n, gaps)
    assert all(16000 <= gap <= 24050 for gap in gaps[6:])
    assert len(set(gaps[6:])) > 1  # jitter: keypads of a hall do not retry in step
    assert network.disconnects > 0


def test_wifi_backoff_starts_over_after_the_link_came_back(tmp_path):
    network = SimNetwork()
    with unittest.mock.patch.object(device_main, "ticks_ms", lambda: 0):
        dev = boot(tmp_path, network=network, wifi_ssid="hall", wifi_retry_ms=1000)
    for t in range(0, 60000, 100):
        dev.step(t)
    assert dev._wifi_tries > 3
    network.link_up = True
    dev._link(60000)
    assert dev._wifi_tries == 0
    network.link_up = False
    before = network.connects
    dev.step(60100)
    assert network.connects == before + 1  # at once, not after the long backoff


def test_no_ssid_no_joins(tmp_path):
    network = SimNetwork()
    dev = boot(tmp_path, network=network)
    for t in range(0, 10000, 100):
        dev.step(t)
    assert network.connects == 0


@pytest.mark.parametrize(
    "rssi,expected", [(-55, -55), (0, 0), (-200, -150), (-150, -150), (12, None), (None, None)]
)
def test_signal_is_clamped_into_the_contract_or_left_out(tmp_path, rssi, expected):
    network = SimNetwork()
    network.rssi = rssi
    status = encoded_status(boot(tmp_path, network=network))
    assert status.get("signal") == expected


# --- littlefs ---------------------------------------------------------------------


class VfsFat:
    pass


class VfsLfs2:
    pass


def fake_vfs(*mounts):
    module = types.ModuleType("vfs")
    module.mount = lambda *args: list(mounts)
    return unittest.mock.patch.dict(sys.modules, {"vfs": module})


def test_the_filesystem_of_the_data_folder_is_told_by_vfs_mount():
    assert filesystem_problem("/data") is None  # CPython: no vfs, the port cannot tell
    with fake_vfs((VfsLfs2(), "/")):
        assert filesystem_problem("/data") is None
    with fake_vfs((VfsFat(), "/")):
        assert "FAT" in filesystem_problem("/data")
    with fake_vfs((VfsLfs2(), "/"), (VfsFat(), "/sd")):
        assert filesystem_problem("/data") is None
        assert "FAT" in filesystem_problem("/sd/data")
        assert filesystem_problem("/sdcard") is None


def test_a_data_folder_on_fat_is_refused_on_screen_and_in_the_crash_file(tmp_path):
    args = (SimMachine(), SimNetwork(), sim_board, settings(tmp_path))
    with fake_vfs((VfsFat(), "/")):
        dev = build(*args)  # the check is on unless skipped
        again = build(*args)
    assert dev.mode == "refused" and dev.store is None and dev.app is None
    assert dev.screen() == ("文件系统不支持", "暂停评价", "请联系技术人员")
    saved = crash_file(tmp_path)
    assert saved["crashes"] == 1  # noted once, not on every boot
    assert "littlefs required" in saved["last"][0]
    assert again.mode == "refused" and encoded_status(again)["last_error"] == saved["last"][0]
    assert not (tmp_path / "data" / "journal").exists()
    with fake_vfs((VfsFat(), "/")):
        skipped = build(*args, check_filesystem=False)  # the simulators' explicit skip
    assert skipped.mode == "normal"


# --- small files by temp file and rename ----------------------------------------------


def signed_config(version, staff):
    return messages.config(version, window_id="A01", staff_name=staff, staff_no="7")


def test_the_desired_config_is_written_by_rename_and_a_torn_write_keeps_the_last(tmp_path):
    dev = boot(tmp_path)
    dev.sync.on_config(signed_config(3, "张敏"))
    desired = tmp_path / "data" / "desired.json"
    assert json.loads(desired.read_text())["version"] == 3
    assert not (tmp_path / "data" / "desired.json.tmp").exists()
    # a power cut in the middle of the next write: only the temp file is torn
    (tmp_path / "data" / "desired.json.tmp").write_text('{"v": 1, "t": "config", "vers')
    again = boot(tmp_path)
    assert again.app.assignment["staff_name"] == "张敏"
    assert encoded_status(again)["config_version"] == 3


def test_a_rename_that_fails_leaves_a_readable_file(tmp_path):
    path = str(tmp_path / "small.json")
    device_main.write_small(path, json.dumps({"n": 1}))
    real_rename = device_main.os.rename
    calls = []

    def rename_like_fat(src, dst):  # FAT: no rename onto an existing file
        calls.append(dst)
        if len(calls) == 1:
            raise OSError(17)
        real_rename(src, dst)

    with unittest.mock.patch.object(device_main.os, "rename", rename_like_fat):
        device_main.write_small(path, json.dumps({"n": 2}))
    assert device_main.read_json(path) == {"n": 2}
    (tmp_path / "small.json").unlink()  # cut between the remove and the rename
    (tmp_path / "small.json.tmp").write_text('{"n": 3}')
    assert device_main.read_json(path) == {"n": 3}


# --- a full flash --------------------------------------------------------------------


TAGS = [[s, f"T{s}", f"标签{s}"] for s in levels.STARS]


class FullStore:
    """A store with no room left: add() raises as the real one does."""

    def __init__(self, error):
        self.next_seq = 1
        self.error = error
        self.tries = 0

    def add(self, rec):
        self.tries += 1
        raise self.error


def run_full(stars, tags, error):
    app = KeypadApp("kp-01", b"k" * 32, FullStore(error), lambda: (1764145800, "ntp"), "b", 0, 4000)
    app.configure({"content_version": "cv", "tags": tags})
    trace = [("start", app.start_case({"case_no": "C-1"}, 0))]
    screens = []
    app.press(levels.KEY_STARS.index(stars), 100)
    for now in range(200, 4300, 100):
        if now == 1000:
            trace.append(("start", app.start_case({"case_no": "C-2", "timeout_s": 30}, now)))
        app.tick(now)
        screens.append(app.screen())
        while app.events:
            trace.append((now, *app.events.pop(0)))
    return app, trace, screens


@pytest.mark.parametrize(
    "error", [StorageFull(28, "full"), OSError(28, "ENOSPC")], ids=["StorageFull", "ENOSPC"]
)
def test_a_full_flash_refuses_the_rating_the_same_way_for_every_level(error):
    traces = {}
    for tags in (TAGS, [t for t in TAGS if levels.is_bad(t[0])]):
        for stars in levels.STARS:
            app, trace, screens = run_full(stars, tags, error)
            traces[(len(tags), stars)] = trace
            assert FULL_TEXT in [line for screen in screens for line in screen]
            assert app.storage_full and app.store.tries == 1 and app.state == "ask"
            assert app.screen() == (FULL_TEXT,)
    first = traces[(5, 5)]
    assert all(trace == first for trace in traces.values()), traces
    assert first == [
        ("start", True),
        ("start", True),  # queued during the window, as always
        (4100, "error", {"code": "storage_full", "text": FULL_TEXT}),
        (4100, "timeout", {"case_no": "C-1"}),  # the case closes without a rating
    ]
    for _, kind, fields in first[2:]:
        serial.validate(serial.message(kind, 1, **fields))


def test_presses_while_full_do_nothing_but_show_it_until_space_is_freed(tmp_path):
    store = Store(seeded(tmp_path), max_bytes=1)  # not even one record fits
    app = KeypadApp("kp-01", b"k" * 32, store, lambda: (1764145800, "ntp"), "b", 0, 1000)
    assert app.press(0, 10) is None and app.screen() == (FULL_TEXT,)
    assert store.full and app.storage_full
    app.tick(1010)
    assert app.events[0] == ("error", {"code": "storage_full", "text": FULL_TEXT})
    app.events.clear()
    for index in range(5):  # every level key, later: refused before the level matters
        assert app.press(index, 2000 + index) is None
        assert app.state == "idle" and app.screen() == (FULL_TEXT,)
    app.tick(10000)
    assert app.events == [] and len(store) == 0
    store.max_bytes = None
    store._full = False  # as an ack freeing space does
    assert not app.storage_full
    rec = app.press(0, 20000)
    assert rec["seq"] == 1 and app.screen() == ("感谢您的评价",)


def test_a_broken_flash_is_a_crash_but_the_window_still_ends_as_usual():
    app = KeypadApp("kp-01", b"k" * 32, FullStore(OSError(5, "EIO")), lambda: (0, "unset"), "b")
    with pytest.raises(OSError):
        app.press(0, 0)  # the main loop catches and counts it
    assert app.screen() == ("存储故障，暂停评价",)
    assert app.state == "thanks" and not app.storage_full
    app.tick(app.confirm_ms)
    assert app.events == [("error", {"code": "storage", "text": "存储故障"})]
    assert app.state == "idle"


def test_the_status_says_storage_full(tmp_path):
    dev = boot(tmp_path)
    assert encoded_status(dev)["storage_full"] is False
    dev.store.max_bytes = 1
    assert dev.app.press(0, 100) is None
    assert encoded_status(dev)["storage_full"] is True


# --- the status extras -----------------------------------------------------------------


def test_the_status_extras_are_within_the_contract(tmp_path):
    dev = boot(tmp_path)
    status = encoded_status(dev)
    assert status["crashes"] == 0 and status["safe_mode"] is False
    assert 0 < status["flash_free"] <= messages.MAX_INT
    assert "last_error" not in status and "config_version" not in status
    with unittest.mock.patch.object(device_main, "_statvfs_free", lambda folder: 1 << 40):
        assert encoded_status(dev)["flash_free"] == messages.MAX_INT
    gc_module = types.ModuleType("gc")
    gc_module.mem_free = lambda: 51234
    gc_module.collect = lambda: None
    with unittest.mock.patch.dict(sys.modules, {"gc": gc_module}):
        assert encoded_status(dev)["heap_free"] == 51234


# --- the same under MicroPython ------------------------------------------------------------

MICROPYTHON_LOOP = r"""
import json, os
import machine, network
from device import config
from device.compat import ticks_add, ticks_diff
from device.main import build
from hardware.boards import esp32s3_keypad as board

from device.store import seed
seed("/work/data")
settings = config.load(None, {"device_id": "kp-01", "key": "00" * 32, "wifi_ssid": "hall",
                              "broker_host": "192.0.2.1", "data_dir": "/work/data",
                              "wifi_retry_ms": 1000, "wifi_retry_max_ms": 8000})
device = build(machine, network, board, settings, wall_clock=lambda: (1764145800, "ntp"))
print("mode", device.mode)
base = ticks_add(0, -20000)  # 20 s before the wrap of the board's tick counter
calls = [ticks_diff(base, base)]
def connect(ssid, password):
    calls.append(now)
device.wlan.connect = connect
device._wifi_next = None
device._wifi_tries = 0
now = base
for n in range(6000):  # 60 s in 10 ms passes, across the wrap
    now = ticks_add(base, n * 10)
    device.run_once(now)
gaps = [ticks_diff(b, a) for a, b in zip(calls[1:], calls[2:])]
ok = all(min(1000 << i, 8000) <= g <= min(1000 << i, 8000) * 3 // 2 + 10 for i, g in enumerate(gaps))
print("joins", len(calls) - 1, "gaps ok", ok)
def broken(now_ms):
    raise OSError(110)
device.app.tick = broken
print("pause", device.run_once(ticks_add(now, 10)), device.run_once(ticks_add(now, 20)))
with open("/work/data/crashes.json") as f:
    saved = json.loads(f.read())
print("crashes", saved["crashes"], saved["last"])
print("status", device.status()["crashes"], device.status()["safe_mode"])
"""


@pytest.mark.micropython
def test_the_loop_survives_and_rejoins_under_micropython():
    from tests.harness.micropython import run_micropython
    from tests.test_micropython_vectors import BOARD_STUBS

    result = run_micropython(MICROPYTHON_LOOP, files=BOARD_STUBS)
    result.check()
    lines = result.stdout.splitlines()
    assert lines[0] == "mode normal"
    assert lines[1].startswith("joins ") and lines[1].endswith("gaps ok True")
    assert int(lines[1].split()[1]) >= 5
    assert lines[2] == "pause 20 40"
    # the same error twice in a row is written once (flash wear); the status counts both
    assert lines[3] == "crashes 1 ['app: OSError: [Errno 110] ETIMEDOUT']"
    assert lines[4] == "status 2 False"


def test_the_running_slot_is_the_version_status_will_and_window_pc_report(tmp_path):
    """After an update the active slot's version, not the settings' factory
    one, goes into the status, the offline will (set before the first
    connect) and the window PC's `info`."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "fw.json").write_text(json.dumps({"active": "/fw/0.2.0", "version": "0.2.0"}))

    class UARTBoard(SimMachine):
        def UART(self, *args, **kwargs):  # noqa: N802 - machine.UART's name
            return object()

    dev = boot(tmp_path, UARTBoard(), window_uart=1)
    topic, payload, qos, retain = dev.client._will
    assert topic == "hcp/v1/dev/kp-01/up/status" and (qos, retain) == (1, True)
    assert messages.decode(payload, messages.STATUS) == messages.status(False, fw="0.2.0")
    assert dev.status()["fw"] == "0.2.0" and dev.window_link.firmware == "0.2.0"
    (data / "fw.json").write_text("{")  # a torn or foreign file: the factory version
    assert boot(tmp_path).client._will[1] == messages.encode(messages.status(False, fw="0.1.0"))


MICROPYTHON_SAFE_AFTER_ROLLBACK = r"""
import json, os, sys
import machine, network
from device import config
from device.main import build
from hardware.boards import esp32s3_keypad as board

from device import update
from device.store import seed
seed("/work/data")
# an update to 0.2.0 that never came up: /boot.py made the factory firmware
# (0.1.0, in /lib) active again, as device/update.py's BOOT_PY writes it
with open("/work/data/fw.json", "w") as f:
    f.write(json.dumps({"active": "/lib", "version": "0.1.0", "rolled_back": "0.2.0",
                        "reason": "did not come up in 3 boots"}))
def boot():  # config.json read afresh, as at every boot
    settings = config.load(None, {"device_id": "kp-01", "key": "00" * 32, "firmware": "0.0.9",
                                  "broker_host": "192.0.2.1", "data_dir": "/work/data",
                                  "safe_mode_hold_ms": 50})
    device = build(machine, network, board, settings, wall_clock=lambda: (1764145800, "ntp"))
    print(update.boot_line(device))  # as main() does
    print("kept", "device.update" in sys.modules)
    return device
machine.Pin.levels[board.KEY_PINS[0]] = 0  # the technician holds key 0
status = boot().status()
print("status", status["fw"], status["safe_mode"], status["crashes"], status["last_error"])
# the next boot, in normal mode: the rollback was noted once
machine.Pin.levels[board.KEY_PINS[0]] = 1
device = boot()
print("status", device.status()["fw"], device.status()["crashes"])
# a slot on trial, started in safe mode: the console says which and which boot
with open("/work/data/fw.json", "w") as f:
    f.write(json.dumps({"active": "/fw/0.3.0", "version": "0.3.0", "trial": True, "boots": 2,
                        "previous": "/lib", "previous_version": "0.1.0"}))
machine.Pin.levels[board.KEY_PINS[0]] = 0
print("status", boot().status()["fw"])
# the same in normal mode: the trial needs device/update.py, which stays
machine.Pin.levels[board.KEY_PINS[0]] = 1
print("status", boot().status()["fw"])
"""


@pytest.mark.micropython
def test_safe_mode_after_a_rollback_reports_the_firmware_running_and_why():
    """A technician holds key 0 on a keypad whose update to 0.2.0 was rolled
    back to the factory firmware: the console's first line and the status
    name the firmware really running (the active slot's, here the factory
    0.1.0, not the settings' 0.0.9) and why, on the real interpreter."""
    from tests.harness.micropython import run_micropython
    from tests.test_micropython_vectors import BOARD_STUBS

    result = run_micropython(MICROPYTHON_SAFE_AFTER_ROLLBACK, files=BOARD_STUBS)
    result.check()
    assert result.stdout.splitlines() == [
        "hcp: safe fw 0.1.0 (key 0 held at boot; 0.2.0 rolled back: did not come up in 3 boots)",
        "kept False",  # its code is garbage once the line is made
        "status 0.1.0 True 1 update: 0.2.0 rolled back: did not come up in 3 boots",
        "hcp: normal fw 0.1.0 (0.2.0 rolled back: did not come up in 3 boots)",
        "kept False",
        "status 0.1.0 1",
        "hcp: safe fw 0.3.0 (key 0 held at boot; 0.3.0 on trial, boot 2 of 3)",
        "kept False",
        "status 0.3.0",
        "hcp: normal fw 0.3.0 (0.3.0 on trial, boot 2 of 3)",
        "kept True",
        "status 0.3.0",
    ]
