# ruff: noqa: F811 (the fleet_broker fixture is imported from test_revocation)
"""Firmware updates (issue 11): bundles, the chunked download, staging,
trial and rollback, rollouts.

The device side (device/update.py) downloads from the collector's real HTTP
server here (werkzeug serving the app on a port): a good update is staged and
switched; a corrupted chunk is refused and nothing changes; a power cut
while staging leaves the old firmware and the next attempt resumes at the
chunk where it stopped; a firmware on trial that does not report healthy in
time is rolled back, as is one that does not come up in three boots (/boot.py,
BOOT_PY, run here on CPython against a folder standing for the board's "/").
End to end, a rollout reaches a simulated keypad through the fleet agent and
a locked-down Mosquitto and the keypad comes back on the new version.
The same on MicroPython's unix port: tests/test_firmware_board.py.
"""

import json
import socket
import sys
import time

import pytest
from sqlalchemy import select

from device import update
from simulators.keypad import SimKeypad
from sync_server import db, firmware, fleet
from sync_server.cli import serve_web
from sync_server.schema_fleet import firmware_files, firmware_targets, fleet_commands
from tests.harness.collector import AuthActions, add_users, make_app
from tests.test_revocation import fleet_broker, wait_for  # noqa: F401 (fixture)

FILES = {
    "device/app.mpy": bytes(range(256)) * 40,  # 10,240 bytes: 3 chunks of 4,096
    "device/main.mpy": b"main" * 700,
    "protocols/sign.mpy": b"s" * 4096,  # exactly one chunk
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """The collector app with bundle 0.2.0, served over HTTP on a free port."""
    app = make_app(tmp_path / "web")
    engine = app.extensions["hcp_engine"]
    with engine.begin() as conn:
        manifest = firmware.add_bundle(conn, "0.2.0", FILES, "test")
        sha = firmware.bundle(conn, "0.2.0").manifest_sha256
    port = free_port()
    server, _thread = serve_web(app, "127.0.0.1", port)
    yield app, engine, manifest, sha, f"http://127.0.0.1:{port}"
    server.shutdown()
    engine.dispose()


def args_for(base, sha, version="0.2.0", health_s=60):
    return {"version": version, "url": f"{base}/fw/{version}/", "manifest_sha256": sha,
            "health_s": health_s}  # fmt: skip


def board(tmp_path):
    root = tmp_path / "board"
    (root / "data").mkdir(parents=True)
    return root


# --- the bundle and its download ---------------------------------------------------------


def test_the_manifest_lists_sizes_hashes_and_chunk_hashes(served):
    _app, _engine, manifest, sha, _base = served
    app_file = manifest["files"][0]
    assert [f["path"] for f in manifest["files"]] == sorted(FILES)
    assert app_file["size"] == 10240 and len(app_file["chunks"]) == 3
    assert app_file["sha256"] == firmware.sha256(FILES["device/app.mpy"])
    assert app_file["chunks"][2] == firmware.sha256(FILES["device/app.mpy"][8192:])
    assert len(manifest["files"][2]["chunks"]) == 1


def test_the_download_routes_serve_bounded_chunks(served):
    app, _engine, _manifest, sha, _base = served
    client = app.test_client()  # no login: devices download without one
    raw = client.get("/fw/0.2.0/manifest.json")
    assert raw.status_code == 200 and firmware.sha256(raw.data) == sha
    chunk = client.get("/fw/0.2.0/chunk?path=device/app.mpy&n=2")
    assert chunk.status_code == 200 and chunk.data == FILES["device/app.mpy"][8192:]
    for path, status, text in [
        ("/fw/0.2.0/chunk?path=device/app.mpy&n=3", 416, "n: beyond the file's last chunk\n"),
        ("/fw/0.2.0/chunk?path=../etc/passwd&n=0", 400,
         "path, n: a file of the manifest and a chunk number\n"),
        ("/fw/0.2.0/chunk?path=device/app.mpy&n=-1", 400,
         "path, n: a file of the manifest and a chunk number\n"),
    ]:  # fmt: skip
        answer = client.get(path)
        assert (answer.status_code, answer.get_data(as_text=True)) == (status, text)
    assert client.get("/fw/0.2.0/chunk?path=device/other.mpy&n=0").status_code == 404
    assert client.get("/fw/9.9.9/manifest.json").status_code == 404


@pytest.mark.parametrize(
    ("version", "files", "chunk", "message"),
    [
        ("0.2.0 beta", {"a.mpy": b"x"}, 4096, "version: 1..32 characters of A-Z a-z 0-9 . _ -"),
        ("0.3.0", {}, 4096, "files: a bundle holds 1..200 files"),
        ("0.3.0", {"../a.mpy": b"x"}, 4096, "files: '../a.mpy' is not a firmware file path"),
        ("0.3.0", {"a.mpy": b"x"}, 100, "chunk: must be 256..16384 bytes"),
        ("0.2.0", {"a.mpy": b"x"}, 4096, "version: bundle 0.2.0 exists already (a version never changes)"),
    ],
)  # fmt: skip
def test_a_bad_bundle_is_refused_naming_the_field(served, version, files, chunk, message):
    _app, engine, *_rest = served
    with engine.begin() as conn, pytest.raises(firmware.FirmwareError) as caught:
        firmware.add_bundle(conn, version, files, "test", chunk)
    assert str(caught.value) == message


# --- staging on the device side ------------------------------------------------------------


def test_a_good_update_is_staged_checked_and_switched(served, tmp_path):
    _app, _engine, _manifest, sha, base = served
    root = board(tmp_path)
    updater = update.Updater(str(root / "data"), str(root))
    ok, result = updater.stage(args_for(base, sha), "0.1.0")
    assert (ok, result) == (True, {"staged": "0.2.0", "files": 3, "bytes": 10240 + 2800 + 4096})
    for path, data in FILES.items():
        assert (root / "fw" / "0.2.0" / path).read_bytes() == data
    assert json.loads((root / "data" / "fw.json").read_text()) == {
        "active": "/fw/0.2.0", "version": "0.2.0", "previous": "/lib",
        "previous_version": "0.1.0", "trial": True, "boots": 0, "health_s": 60,
    }  # fmt: skip
    assert not (root / "data" / update.PROGRESS_FILE).exists()
    assert update.running_version(str(root / "data"), "0.1.0") == "0.2.0"
    # on trial, another update is refused
    assert updater.stage(args_for(base, sha, "0.3.0"), "0.2.0") == (
        False, "busy: firmware 0.2.0 is on trial"
    )  # fmt: skip


def test_a_corrupted_chunk_is_refused_and_the_old_firmware_stays(served, tmp_path):
    _app, engine, _manifest, sha, base = served
    bad = bytearray(FILES["device/app.mpy"])
    bad[5000] ^= 0xFF  # chunk 1 of device/app.mpy, as stored on the collector
    with engine.begin() as conn:
        f = firmware_files.c
        conn.execute(
            firmware_files.update()
            .where(f.version == "0.2.0", f.path == "device/app.mpy")
            .values(data=bytes(bad))
        )
    root = board(tmp_path)
    updater = update.Updater(str(root / "data"), str(root))
    ok, result = updater.stage(args_for(base, sha), "0.1.0")
    assert (ok, result) == (
        False, "failed: chunk 1 of device/app.mpy: sha256 does not match the manifest"
    )  # fmt: skip
    assert updater.chunks_refused == update.CHUNK_TRIES
    assert not (root / "data" / "fw.json").exists()  # nothing switched
    assert update.running_version(str(root / "data"), "0.1.0") == "0.1.0"


def test_a_forged_manifest_is_refused(served, tmp_path):
    _app, _engine, _manifest, _sha, base = served
    root = board(tmp_path)
    updater = update.Updater(str(root / "data"), str(root))
    ok, result = updater.stage(args_for(base, "0" * 64), "0.1.0")
    assert (ok, result) == (
        False,
        "failed: manifest: sha256 is not the one the signed command gives",
    )
    assert not (root / "fw").exists()
    for args, reason in [
        ({**args_for(base, "0" * 64), "url": "https://x/"}, "args.url: must be an http:// URL of at most 200"),
        ({**args_for(base, "0" * 64), "health_s": 5}, "args.health_s: must be an integer 30..3600"),
        ({**args_for(base, "0" * 64), "version": "a/b"}, "args.version: only A-Z a-z 0-9 . _ -"),
        (args_for(base, "0" * 64, "0.1.0"), "already running 0.1.0"),
    ]:  # fmt: skip
        assert updater.stage(args, "0.1.0") == (False, reason)


@pytest.mark.parametrize(
    "setting, floor",
    [(None, 30), (5, 5), (12, 12), (4, 30), (30, 30), (True, 30), ("5", 30)],
)
def test_the_health_floor_is_lowered_only_by_a_sane_provisioned_setting(tmp_path, setting, floor):
    """health_min_s in config.json (5..29) lowers the device's floor; anything
    else leaves it at 30. The bound is the one named in the refusal."""
    root, base = board(tmp_path), "http://127.0.0.1:9"
    if setting is not None:
        (root / "data" / "config.json").write_text(json.dumps({"health_min_s": setting}))
    updater = update.Updater(str(root / "data"), str(root), fetch=lambda url, limit: b"{}")
    assert updater.min_health_s() == floor
    too_short = {**args_for(base, "0" * 64), "health_s": floor - 1}
    assert updater.stage(too_short, "0.1.0") == (
        False,
        f"args.health_s: must be an integer {floor}..3600",
    )
    # the floor itself passes the argument check (the forged hash is what refuses it)
    assert updater.stage({**too_short, "health_s": floor}, "0.1.0") == (
        False,
        "failed: manifest: sha256 is not the one the signed command gives",
    )


def test_the_collectors_health_floor_is_its_setting(engine, monkeypatch):
    db.add_device(engine, "kp-00", "22" * 32)
    with engine.begin() as conn:
        firmware.add_bundle(conn, "0.2.0", FILES, "test")
        with pytest.raises(firmware.FirmwareError) as caught:
            firmware.start_rollout(conn, "0.2.0", "all", 100, "a", "http://c/", health_s=29)
        assert str(caught.value) == "health_s: must be 30..3600 seconds"
        monkeypatch.setattr(firmware, "MIN_HEALTH_S", 5)
        with pytest.raises(firmware.FirmwareError) as caught:
            firmware.start_rollout(conn, "0.2.0", "all", 100, "a", "http://c/", health_s=4)
        assert str(caught.value) == "health_s: must be 5..3600 seconds"
        assert firmware.start_rollout(conn, "0.2.0", "all", 100, "a", "http://c/", health_s=5)


class PowerCut(BaseException):
    """The board lost power: nothing after this runs."""


def test_a_power_cut_while_staging_leaves_the_old_firmware_and_resumes(served, tmp_path):
    _app, _engine, _manifest, sha, base = served
    root = board(tmp_path)
    fetched = []

    def cut_after(n):
        def fetch(url, limit):
            if "chunk?" in url and len([u for u in fetched if "chunk?" in u]) == n:
                raise PowerCut()
            fetched.append(url)
            return update.http_get(url, limit)

        return fetch

    with pytest.raises(PowerCut):
        update.Updater(str(root / "data"), str(root), cut_after(2)).stage(
            args_for(base, sha), "0.1.0"
        )
    assert not (root / "data" / "fw.json").exists()  # the old firmware runs on
    progress = json.loads((root / "data" / update.PROGRESS_FILE).read_text())
    assert progress == {"version": "0.2.0", "file": 0, "n": 2}
    fetched.clear()
    ok, result = update.Updater(str(root / "data"), str(root), cut_after(99)).stage(
        args_for(base, sha), "0.1.0"
    )
    assert ok and result["staged"] == "0.2.0"
    chunks = [u.split("?")[1] for u in fetched if "chunk?" in u]
    # resumed at chunk 2 of the first file: chunks 0 and 1 were not fetched again
    assert chunks == ["path=device/app.mpy&n=2", "path=device/main.mpy&n=0",
                      "path=protocols/sign.mpy&n=0"]  # fmt: skip
    for path, data in FILES.items():
        assert (root / "fw" / "0.2.0" / path).read_bytes() == data


# --- trial, confirmation and rollback --------------------------------------------------------


def switched(tmp_path, health_s=60):
    root = board(tmp_path)
    state = {"active": "/fw/0.2.0", "version": "0.2.0", "previous": "/lib",
             "previous_version": "0.1.0", "trial": True, "boots": 0, "health_s": health_s}  # fmt: skip
    (root / "data" / "fw.json").write_text(json.dumps(state))
    return root


def test_a_healthy_firmware_confirms_itself(tmp_path):
    root = switched(tmp_path)
    trial = update.Trial(str(root / "data"), now=lambda: 1000)
    assert trial.on_trial
    assert trial.tick(30000, False) is None
    assert trial.tick(31000, True) == "confirmed"
    assert json.loads((root / "data" / "fw.json").read_text()) == {
        "active": "/fw/0.2.0", "version": "0.2.0", "previous": "/lib", "previous_version": "0.1.0"
    }  # fmt: skip
    assert trial.tick(999999, False) is None  # confirmed for good


def test_a_firmware_not_healthy_in_time_is_rolled_back(tmp_path):
    root = switched(tmp_path, health_s=60)
    trial = update.Trial(str(root / "data"), now=lambda: 1000)
    assert trial.tick(1000 + 59999, False) is None
    assert trial.tick(1000 + 60000, False) == "rollback"
    assert json.loads((root / "data" / "fw.json").read_text()) == {
        "active": "/lib", "version": "0.1.0", "rolled_back": "0.2.0",
        "reason": "not healthy within 60 s",
    }  # fmt: skip
    assert update.running_version(str(root / "data"), "x") == "0.1.0"


def run_boot_py(root):
    """/boot.py as the board runs it before main.py; returns what it put in sys.path."""
    before = list(sys.path)
    namespace = {}
    code = update.BOOT_PY.replace("_hcp_slot()\n", f"_hcp_slot({str(root)!r})\n")
    try:
        exec(compile(code, "boot.py", "exec"), namespace)
        return [p for p in sys.path if p not in before]
    finally:
        sys.path[:] = before


def test_boot_py_runs_the_slot_and_rolls_back_after_three_boots_on_trial(tmp_path):
    root = switched(tmp_path)
    for boots in (1, 2, 3):
        assert run_boot_py(root) == [str(root) + "/fw/0.2.0"]
        assert json.loads((root / "data" / "fw.json").read_text())["boots"] == boots
    assert run_boot_py(root) == []  # the fourth boot: back to /lib, the factory firmware
    assert json.loads((root / "data" / "fw.json").read_text()) == {
        "active": "/lib", "version": "0.1.0", "rolled_back": "0.2.0",
        "reason": "did not come up in 3 boots",
    }  # fmt: skip
    # confirmed firmware: no counting, the slot every boot
    (root / "data" / "fw.json").write_text(json.dumps({"active": "/fw/0.2.0", "version": "0.2.0"}))
    assert run_boot_py(root) == [str(root) + "/fw/0.2.0"]
    assert json.loads((root / "data" / "fw.json").read_text()) == {
        "active": "/fw/0.2.0", "version": "0.2.0"
    }  # fmt: skip
    (root / "data" / "fw.json").unlink()
    assert run_boot_py(root) == []  # a board that never updated


# --- rollouts ----------------------------------------------------------------------------------


def test_a_rollout_picks_a_stable_percentage_and_can_be_stopped(engine):
    for n in range(20):
        db.add_device(engine, f"kp-{n:02d}", "22" * 32)
    with engine.begin() as conn:
        firmware.add_bundle(conn, "0.2.0", FILES, "test")
        first = firmware.start_rollout(conn, "0.2.0", "all", 50, "admin", "http://c:8080/")
        picked = [r for r in firmware.rollouts(conn) if r["id"] == first][0]["targets"]
        names = [t["device_id"] for t in picked]
        assert names == [
            f"kp-{n:02d}" for n in range(20) if firmware._picked("0.2.0", f"kp-{n:02d}", 50)
        ]
        assert 0 < len(names) < 20
        # the same devices again for the same version and percentage
        again = firmware.start_rollout(conn, "0.2.0", "all", 50, "admin", "http://c:8080/")
        assert [t["device_id"] for t in firmware.rollouts(conn)[0]["targets"]] == names
        cmd = conn.execute(
            select(fleet_commands).where(fleet_commands.c.rollout_id == first)
        ).first()
        assert cmd.cmd == "update"
        assert json.loads(cmd.args) == {
            "version": "0.2.0", "url": "http://c:8080/fw/0.2.0/", "health_s": 300,
            "manifest_sha256": firmware.bundle(conn, "0.2.0").manifest_sha256,
        }  # fmt: skip
        fleet.mark_sent(conn, cmd.id)  # one is out already: it goes on
        assert firmware.stop_rollout(conn, first) == len(names) - 1
        assert firmware.stop_rollout(conn, first) == 0
        states = sorted(
            t["state"]
            for t in [r for r in firmware.rollouts(conn) if r["id"] == first][0]["targets"]
        )
        assert states == ["cancelled"] * (len(names) - 1) + ["waiting"]
        assert again != first
        for group, percent, message in [
            ("unit:nowhere", 100, "group: no unit 'nowhere'"),
            ("devices:kp-00,kp-99", 100, "group: unknown devices kp-99"),
            ("everything", 100, "group: all, unit:<id> or devices:<id>,<id>"),
            ("all", 0, "percent: must be 1..100"),
        ]:
            with pytest.raises(firmware.FirmwareError) as caught:
                firmware.start_rollout(conn, "0.2.0", group, percent, "admin", "http://c/")
            assert str(caught.value) == message


def test_a_rollout_reaches_a_keypad_which_comes_back_on_the_new_version(fleet_broker, tmp_path):
    fb = fleet_broker
    app = make_app(tmp_path / "web", fb.db_url)
    add_users(app)
    port = free_port()
    server, _thread = serve_web(app, "127.0.0.1", port)
    (fb.tmp / "kp-01").mkdir()
    kp = SimKeypad("kp-01", fb.keys["kp-01"], fb.broker.host, fb.broker.port,
                   str(fb.tmp / "kp-01" / "data"), status_every_ms=500)  # fmt: skip
    try:
        kp.start()
        assert wait_for(lambda: "kp-01" in fb.agent.online, 10)
        assert wait_for(lambda: firmware._fw_versions(fb.engine.connect()).get("kp-01"), 10)
        with fb.engine.begin() as conn:
            firmware.add_bundle(conn, "0.2.0", FILES, "test")
            rollout = firmware.start_rollout(conn, "0.2.0", "devices:kp-01", 100, "admin",
                                             f"http://127.0.0.1:{port}/", health_s=60)  # fmt: skip

        def target():
            with fb.engine.connect() as conn:
                t = firmware_targets.c
                return conn.execute(
                    select(t.state, t.detail, t.from_version).where(t.rollout_id == rollout)
                ).one()

        assert wait_for(lambda: target().state == "healthy", 30), target()
        assert target().from_version == "0.1.0"
        assert kp.boots == 2 and kp.call(lambda d: d.sync.firmware) == "0.2.0"
        # the new firmware confirmed itself once it had reported
        fw_state = fb.tmp / "kp-01" / "data" / "fw.json"
        assert wait_for(lambda: "trial" not in json.loads(fw_state.read_text()), 10)
        for path, data in FILES.items():
            assert (fb.tmp / "kp-01" / "fw" / "0.2.0" / path).read_bytes() == data
        page = app.test_client()
        AuthActions(page).login("admin")
        html = page.get("/firmware").get_data(as_text=True)
        assert "已运行新固件" in html and "kp-01" in html
    finally:
        kp.stop()
        server.shutdown()
        app.extensions["hcp_engine"].dispose()


def test_the_offline_will_reports_the_running_firmware_not_the_factory_one(fleet_broker):
    """A keypad running the 0.2.0 slot (fw.json, as a confirmed update leaves
    it) loses power: the broker publishes its will, and the collector stores
    an offline status naming 0.2.0, the firmware that ran, not 0.1.0."""
    fb = fleet_broker
    data = fb.tmp / "kp-01" / "data"
    data.mkdir(parents=True)
    (data / "fw.json").write_text(json.dumps({
        "active": "/fw/0.2.0", "version": "0.2.0", "previous": "/lib",
        "previous_version": "0.1.0",
    }))  # fmt: skip
    kp = SimKeypad("kp-01", fb.keys["kp-01"], fb.broker.host, fb.broker.port, str(data),
                   status_every_ms=500)  # fmt: skip

    def stored():
        with fb.engine.connect() as conn:
            row = conn.execute(
                select(db.devices.c.status).where(db.devices.c.device_id == "kp-01")
            ).scalar()
        return json.loads(row) if row else {}

    try:
        kp.start()
        assert wait_for(lambda: stored().get("online") is True, 10), stored()
        assert stored()["fw"] == "0.2.0"
    finally:
        kp.stop(power_cut=True)  # no DISCONNECT: the broker sends the will
    assert wait_for(lambda: stored().get("online") is False, 10), stored()
    assert stored()["fw"] == "0.2.0"


def test_a_simulated_keypad_boots_naming_the_firmware_it_runs_after_a_rollback(tmp_path):
    """As device/main.py does on a board: the console line and the status
    name the factory firmware the slot was rolled back to, and why."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "fw.json").write_text(json.dumps({
        "active": "/lib", "version": "0.1.0", "rolled_back": "0.2.0",
        "reason": "did not come up in 3 boots",
    }))  # fmt: skip
    kp = SimKeypad("kp-01", "00" * 32, "127.0.0.1", free_port(), str(data), firmware="0.0.9")
    try:
        kp.start()
        assert kp.boot_line.startswith("hcp: ") and " fw 0.1.0 (" in kp.boot_line
        assert "0.2.0 rolled back: did not come up in 3 boots" in kp.boot_line
        assert kp.device.settings["firmware"] == "0.1.0"
        assert "0.2.0 rolled back" in kp.device.crash_log.last_error
    finally:
        kp.stop()


class Slow:
    """The collector's web app with every chunk request noted and, when
    `delay` is set, answered that much later (a slow link)."""

    def __init__(self, app):
        self.app = app
        self.delay = 0.0
        self.chunks: list[str] = []

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").endswith("/chunk"):
            self.chunks.append(environ.get("QUERY_STRING", ""))
            time.sleep(self.delay)
        return self.app(environ, start_response)


@pytest.mark.parametrize("fed", [True, False], ids=["fed", "not-fed"])
def test_a_slow_download_feeds_the_watchdog(fleet_broker, tmp_path, monkeypatch, fed):
    """The keypad's watchdog (SimMachine.WDT: a timer that resets the board)
    runs at 1.5 s; each of the bundle's 5 chunks is answered 0.5 s late, so
    the download takes longer than the watchdog allows. The update feeds it
    between chunks and before every read: the only reset is the update's own
    reboot. Without the feed (the control) the watchdog resets the board in
    the middle of the download."""
    fb = fleet_broker
    app = make_app(tmp_path / "web", fb.db_url)
    slow = Slow(app)
    slow.delay = 0.5
    port = free_port()
    server, _thread = serve_web(slow, "127.0.0.1", port)
    if not fed:
        stage = update.Updater.__init__
        monkeypatch.setattr(
            update.Updater,
            "__init__",
            lambda self, data_dir, root="", fetch=update.http_get, feed=None, *more: stage(
                self, data_dir, root, fetch, None, *more
            ),
        )
    (fb.tmp / "kp-01").mkdir()
    kp = SimKeypad("kp-01", fb.keys["kp-01"], fb.broker.host, fb.broker.port,
                   str(fb.tmp / "kp-01" / "data"), status_every_ms=500, watchdog=True,
                   watchdog_ms=1500)  # fmt: skip
    causes = []  # (reset cause, chunks requested by then)
    kp.machine.on_reset.insert(0, lambda cause: causes.append((cause, len(slow.chunks))))
    try:
        kp.start()
        assert wait_for(lambda: "kp-01" in fb.agent.online, 10)
        with fb.engine.begin() as conn:
            firmware.add_bundle(conn, "0.2.0", FILES, "test")
            rollout = firmware.start_rollout(conn, "0.2.0", "devices:kp-01", 100, "admin",
                                             f"http://127.0.0.1:{port}/", health_s=60)  # fmt: skip

        def state():
            with fb.engine.connect() as conn:
                t = firmware_targets.c
                return conn.execute(select(t.state).where(t.rollout_id == rollout)).scalar()

        if fed:
            assert wait_for(lambda: state() == "healthy", 30), state()
            assert len(slow.chunks) == 5  # each chunk once: no download began again
            assert causes == [(kp.machine.HARD_RESET, 5)]  # the update's reboot only
        else:
            assert wait_for(lambda: causes, 30)
            cause, chunks = causes[0]
            assert cause == kp.machine.WDT_RESET and chunks < 5  # in the middle
    finally:
        kp.stop()
        server.shutdown()
        app.extensions["hcp_engine"].dispose()


def test_the_fleet_commands_store_a_bundle_start_and_stop_a_rollout(tmp_path, capsys):
    from hcp import fleet as fleet_cli

    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = db.make_engine(url)
    db.init(engine)
    db.add_device(engine, "kp-01", "44" * 32)
    folder = tmp_path / "fw"
    for path, data in FILES.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    assert fleet_cli.main(["fleet", "bundle", "0.2.0", str(folder), "--db", url]) == 0
    assert capsys.readouterr().out == "bundle 0.2.0: 3 files, 17136 bytes\n"
    assert fleet_cli.main(["fleet", "bundle", "0.2.0", str(folder), "--db", url]) == 1
    assert capsys.readouterr().err == (
        "error: version: bundle 0.2.0 exists already (a version never changes)\n"
    )
    assert fleet_cli.main(["fleet", "bundle", "0.3.0", str(tmp_path / "no"), "--db", url]) == 1
    assert capsys.readouterr().err == f"error: folder: {tmp_path / 'no'} is not a folder\n"
    assert fleet_cli.main(["fleet", "rollout", "0.2.0", "--url", "http://10.0.0.2:8080",
                           "--db", url]) == 0  # fmt: skip
    assert capsys.readouterr().out == "rollout 1: 0.2.0 to 1 devices\n"
    assert fleet_cli.main(["fleet", "rollout", "0.2.0", "--url", "ftp://x", "--db", url]) == 1
    assert capsys.readouterr().err == (
        "error: url: the collector's address as devices reach it (http://...)\n"
    )
    assert fleet_cli.main(["fleet", "stop", "1", "--db", url]) == 0
    assert capsys.readouterr().out == "rollout 1 stopped; 1 undelivered commands cancelled\n"
    assert fleet_cli.main(["fleet", "stop", "7", "--db", url]) == 1
    assert capsys.readouterr().err == "error: rollout 7: no such rollout\n"
    engine.dispose()
