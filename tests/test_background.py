"""The collector's background work and its settings file: what starts, what a
failing job does, and `hcp collector serve` delivering a new case's alert."""

from __future__ import annotations

import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sync_server import SettingsError, background, db, org
from sync_server.schema_cases import case_alerts, duty_contacts
from tests.harness.collector import make_app
from tests.harness.records import add_evaluation

ROOT = Path(__file__).resolve().parent.parent


def wait_for(check, seconds=20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_a_failing_job_is_logged_and_runs_again(caplog):
    calls = []

    def job():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the database went away")

    periodic = background.Periodic("flaky", 0.01, job).start()
    try:
        assert wait_for(lambda: len(calls) >= 3)
    finally:
        periodic.stop()
    assert periodic.errors == 1
    assert "background job flaky failed; it runs again in 0 s" in caplog.text
    assert "the database went away" in caplog.text


def test_the_collector_starts_what_its_settings_ask_for(tmp_path):
    plain = make_app(tmp_path / "plain")
    jobs = background.start(plain)
    try:
        assert jobs.names() == ["case-alerts", "gaming", "rankings"]
    finally:
        jobs.stop()
    with_sms = make_app(tmp_path / "sms", HCP_SMS_GATEWAY_URL="http://127.0.0.1:9/")
    jobs = background.start(with_sms)
    try:
        assert jobs.names() == ["case-alerts", "gaming", "rankings", "sms"]
    finally:
        jobs.stop()
    assert jobs.names() == []


def test_a_bad_alert_sender_is_refused_before_anything_starts(tmp_path):
    app = make_app(tmp_path, HCP_CASE_ALERT_SENDER="carrier-pigeon")
    with pytest.raises(ValueError) as refused:
        background.start(app)
    assert str(refused.value) == (
        "HCP_CASE_ALERT_SENDER: must be log or webhook:<URL>, got 'carrier-pigeon'"
    )


# --- the settings file ----------------------------------------------------------------


def test_settings_come_from_the_instance_file_and_the_caller_wins(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "settings.toml").write_text(
        'HCP_TIMEZONE = "Asia/Urumqi"\nHCP_DASHBOARD_LATEST = 25\n', encoding="utf-8"
    )
    app = make_app(tmp_path, HCP_DASHBOARD_LATEST=5)
    assert app.config["HCP_TIMEZONE"] == "Asia/Urumqi"
    assert app.config["HCP_DASHBOARD_LATEST"] == 5


def test_a_settings_file_named_by_the_environment(tmp_path, monkeypatch):
    file = tmp_path / "hcp.toml"
    file.write_text("HCP_GOOD_RATE_STARS = [5, 4]\n", encoding="utf-8")
    monkeypatch.setenv("HCP_SETTINGS", str(file))
    assert make_app(tmp_path).config["HCP_GOOD_RATE_STARS"] == [5, 4]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "{file}: no such settings file"),
        ("HCP_TIMEZONE = ", "{file}: not valid TOML (Invalid value (at end of document))"),
        (
            'hcp_timezone = "UTC"\nother = 1\n',
            "{file}: keys must be upper case, got hcp_timezone, other",
        ),
    ],
)
def test_a_bad_settings_file_is_refused_with_its_name(tmp_path, content, message):
    file = tmp_path / "settings.toml"
    if content is not None:
        file.write_text(content, encoding="utf-8")
    with pytest.raises(SettingsError) as refused:
        make_app(tmp_path, HCP_SETTINGS=str(file))
    assert str(refused.value) == message.format(file=file)


def test_serve_refuses_a_bad_settings_file(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "hcp", "collector", "serve", "--db", f"sqlite:///{tmp_path}/c.db",
         "--settings", str(tmp_path / "missing.toml")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == f"error: {tmp_path / 'missing.toml'}: no such settings file\n"


# --- serve: a new 差评's alert reaches the unit's duty contact -----------------------------


class Hook(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args):
        pass


def test_serve_delivers_a_new_cases_alert_to_the_webhook(tmp_path):
    from hcp.broker import free_port, start_broker

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    Hook.received = []
    url = f"sqlite:///{tmp_path / 'c.db'}"
    app = make_app(tmp_path / "setup", url)
    engine = app.extensions["hcp_engine"]
    with engine.begin() as conn:
        org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
        org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")
        conn.execute(
            duty_contacts.insert().values(
                unit_id="hall-ws", name="值班员", phone="05330000000",
                created_by="admin", created_at=db.utc_now(),
            )
        )  # fmt: skip
    add_evaluation(engine, "kp-01:1", 1, window_id="A01", comment="等了很久")
    with engine.connect() as conn:
        assert conn.execute(case_alerts.select()).one().state == "pending"
    engine.dispose()
    settings = tmp_path / "settings.toml"
    settings.write_text(
        f'HCP_CASE_ALERT_SENDER = "webhook:http://127.0.0.1:{hook.server_port}/"\n'
        "HCP_CASE_ALERT_S = 0.2\n",
        encoding="utf-8",
    )
    try:
        with start_broker("amqtt", port=free_port(), workdir=str(tmp_path / "broker")) as broker:
            process = subprocess.Popen(
                [sys.executable, "-m", "hcp", "collector", "serve", "--db", url, "--mqtt",
                 broker.url, "--port", str(free_port()), "--settings", str(settings)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            )  # fmt: skip
            try:
                assert wait_for(lambda: Hook.received, 30), process.stderr.read1(4000)
                process.send_signal(signal.SIGINT)
                out, err = process.communicate(timeout=20)
            finally:
                if process.poll() is None:
                    process.kill()
    finally:
        hook.shutdown()
    assert process.returncode == 0, err
    assert "collector background: case-alerts, gaming, rankings\n" in out
    [alert] = Hook.received
    assert alert["unit_id"] == "hall-ws" and alert["stars"] == 1
    assert [r["name"] for r in alert["recipients"]] == ["值班员"]
    check = db.make_engine(url)
    with check.connect() as conn:
        assert conn.execute(case_alerts.select()).one().state == "sent"
    check.dispose()
