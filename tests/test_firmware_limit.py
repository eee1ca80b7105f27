"""Firmware downloads are rate-limited per device (issue 11): the collector
answers 429 with Retry-After beyond HCP_FIRMWARE_RATE requests a minute, and
the device waits that long (feeding its watchdog) before it asks again."""

import json

import pytest

from device import update
from sync_server import db, firmware
from sync_server.cli import serve_web
from tests.harness.collector import make_app
from tests.test_firmware import FILES, args_for, board, free_port


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_the_bucket_allows_a_minutes_worth_then_says_how_long_to_wait():
    clock = Clock()
    limit = firmware.DownloadLimit(3, clock)
    assert [limit.take("a") for _ in range(3)] == [0, 0, 0]
    assert limit.take("a") == 20  # one request every 20 s at 3 a minute
    assert limit.take("b") == 0  # another downloader has its own budget
    clock.now += 19.5
    assert limit.take("a") == 1  # half a second short: whole seconds, rounded up
    clock.now += 0.5
    assert limit.take("a") == 0
    clock.now += 3600  # a long pause refills the bucket to the burst, no more
    assert [limit.take("a") for _ in range(4)] == [0, 0, 0, 20]


def test_the_buckets_kept_are_bounded(monkeypatch):
    monkeypatch.setattr(firmware, "MAX_BUCKETS", 3)
    limit = firmware.DownloadLimit(1, Clock())
    for key in "abcd":
        assert limit.take(key) == 0
    assert list(limit._buckets) == ["b", "c", "d"]  # the oldest went
    assert limit.take("a") == 0  # forgotten: a fresh budget


@pytest.fixture
def limited(tmp_path):
    """The collector with bundle 0.2.0, kp-01 and kp-02 registered, at most 2
    downloads a minute per device."""
    app = make_app(tmp_path / "web", HCP_FIRMWARE_RATE=2)
    engine = app.extensions["hcp_engine"]
    db.add_device(engine, "kp-01", "11" * 32)
    db.add_device(engine, "kp-02", "22" * 32)
    with engine.begin() as conn:
        firmware.add_bundle(conn, "0.2.0", FILES, "test")
    yield app
    engine.dispose()


def test_beyond_the_rate_a_download_gets_429_with_retry_after(limited):
    client = limited.test_client()
    for _ in range(2):
        assert client.get("/fw/0.2.0/manifest.json?d=kp-01").status_code == 200
    refused = client.get("/fw/0.2.0/chunk?path=device/app.mpy&n=0&d=kp-01")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "30"
    assert refused.get_data(as_text=True) == (
        "too many downloads: at most 2 a minute per device; retry after 30 s\n"
    )
    # another registered device from the same address has its own budget
    assert client.get("/fw/0.2.0/chunk?path=device/app.mpy&n=0&d=kp-02").status_code == 200
    # no id, or an id that is not a device's: the address's own budget
    assert client.get("/fw/0.2.0/manifest.json").status_code == 200
    assert client.get("/fw/0.2.0/manifest.json?d=kp-99").status_code == 200
    assert client.get("/fw/0.2.0/manifest.json?d=kp-99").status_code == 429
    assert client.get("/fw/0.2.0/manifest.json?d=a%20b").status_code == 429
    # the pages of the collector are not counted
    assert client.get("/login").status_code == 200


@pytest.mark.parametrize("given", ["0", "fast", "100001", "-5"])
def test_a_bad_rate_setting_stops_the_collector_naming_it(tmp_path, given):
    with pytest.raises(ValueError) as caught:
        make_app(tmp_path / "web", HCP_FIRMWARE_RATE=given)
    assert str(caught.value) == (
        f"HCP_FIRMWARE_RATE: must be 1..100000 downloads a minute, got {given!r}"
    )


@pytest.fixture
def served_limited(tmp_path):
    """The same bundle over real HTTP at 60 downloads a minute (one a second)."""
    app = make_app(tmp_path / "web", HCP_FIRMWARE_RATE=60)
    engine = app.extensions["hcp_engine"]
    db.add_device(engine, "kp-01", "11" * 32)
    with engine.begin() as conn:
        firmware.add_bundle(conn, "0.2.0", FILES, "test")
        sha = firmware.bundle(conn, "0.2.0").manifest_sha256
    port = free_port()
    server, _thread = serve_web(app, "127.0.0.1", port)
    yield app, sha, f"http://127.0.0.1:{port}"
    server.shutdown()
    engine.dispose()


def spend(app, n):
    """Spend n of kp-01's downloads from this address (as the device's own
    earlier requests would have)."""
    limit = app.extensions["hcp_firmware_limit"]
    for _ in range(n):
        assert limit.take("127.0.0.1/kp-01") == 0


def test_the_device_waits_out_retry_after_and_finishes(served_limited, tmp_path):
    app, sha, base = served_limited
    spend(app, 55)  # 5 left: the manifest and 4 of the 5 chunks, then a 429
    root = board(tmp_path)
    feeds = []
    updater = update.Updater(str(root / "data"), str(root), feed=lambda: feeds.append(1),
                             device_id="kp-01")  # fmt: skip
    ok, result = updater.stage(args_for(base, sha), "0.1.0")
    assert (ok, result) == (
        True,
        {"staged": "0.2.0", "files": 3, "bytes": sum(map(len, FILES.values()))},
    )
    assert updater.waited_s == 1  # told to wait one second, once
    assert updater.chunks_refused == 0  # a 429 is not a bad chunk
    for path, data in FILES.items():
        assert (root / "fw" / "0.2.0" / path).read_bytes() == data


def test_a_wait_longer_than_the_device_allows_fails_and_keeps_the_progress(
    served_limited, tmp_path, monkeypatch
):
    app, sha, base = served_limited
    monkeypatch.setattr(update, "MAX_RETRY_WAIT_S", 0)
    spend(app, 57)  # the manifest and 2 chunks, then a 429
    root = board(tmp_path)
    updater = update.Updater(str(root / "data"), str(root), device_id="kp-01")
    ok, result = updater.stage(args_for(base, sha), "0.1.0")
    assert (ok, result) == (
        False,
        "failed: http: /fw/0.2.0/chunk?path=device/app.mpy&n=2&d=kp-01 answered 429, "
        "retry after 1 s",
    )
    progress = json.loads((root / "data" / "fw_progress.json").read_text())
    assert progress == {"version": "0.2.0", "file": 0, "n": 2}  # resumed there next time
    assert not (root / "data" / "fw.json").exists()  # nothing switched
