"""Production serving: gunicorn started for real (two workers, the app made
once with --preload) serves the login page and the API to a token."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sync_server import db, tokens
from tests.harness.records import add_evaluation

GUNICORN = Path(sys.executable).with_name("gunicorn")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url, process, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}")
        try:
            return urllib.request.urlopen(url, timeout=2)
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"gunicorn did not answer {url} within {seconds} s")


@pytest.mark.skipif(not GUNICORN.exists() and not shutil.which("gunicorn"), reason="no gunicorn")
def test_gunicorn_serves_the_login_page_and_the_api_with_a_token(tmp_path):
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    engine = db.make_engine(url)
    db.init(engine)
    from sync_server import org

    org.seed(engine)
    add_evaluation(engine, "kp-01:1", 2, org_id="370305001")
    with engine.begin() as conn:
        _id, token = tokens.create(conn, "exports", "supervisor", None, "test")
    engine.dispose()
    port = free_port()
    environ = {
        **os.environ,
        "HCP_DATABASE_URL": url,
        "HCP_INSTANCE_PATH": str(tmp_path / "instance"),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    process = subprocess.Popen(
        [str(GUNICORN if GUNICORN.exists() else shutil.which("gunicorn")), "--preload",
         "--workers", "2", "--bind", f"127.0.0.1:{port}", "sync_server.wsgi:app"],
        env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        login = wait_for(f"http://127.0.0.1:{port}/login", process)
        assert login.status == 200
        page = login.read().decode()
        assert 'name="csrf_token"' in page and "登录" in page
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/analytics/units?unit=370305",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            figures = json.loads(answer.read())
        assert figures["root"] == {"id": "370305", "name": "临淄区"}
        assert figures["total"]["valid"] == 1 and figures["total"]["bad"] == 1
        refused = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/analytics/units",
            headers={"Authorization": "Bearer not-a-token"},
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(refused, timeout=10)
        assert caught.value.code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert "Booting worker" in output, output
