"""`python -m kiosk` (what `hcp kiosk` runs) as its own process, started by
LocalStack as the demo starts it: it comes up headless with the Chinese UI,
takes the collector's config, reports its status, and its local API opens a
finished case."""

import json
import secrets
import time
import urllib.request

from sqlalchemy import select

from hcp.broker import free_port
from hcp.stack import Device, LocalStack
from kiosk import demo_content
from sync_server import db


def test_the_kiosk_process_in_the_local_stack(tmp_path):
    device = Device("ks-stack-01", secrets.token_hex(32), kind="kiosk")
    port = free_port()
    with LocalStack(tmp_path, "amqtt", devices=[device]) as stack:
        with stack.engine.connect() as conn:
            kind = conn.execute(
                select(db.devices.c.kind).where(db.devices.c.device_id == device.device_id)
            ).scalar_one()
        assert kind == "kiosk"
        demo_content.publish_config(
            stack.broker.host, stack.broker.port, device.device_id, device.key_hex,
            demo_content.config(5, "https://hcp.example.cn/followup"),
        )  # fmt: skip
        kiosk = stack.start_kiosk(
            device, http_port=port, technician_pin="2468", status_every_ms=1000
        )
        assert kiosk.wait_ready(60) > 0

        def status():
            with stack.engine.connect() as conn:
                raw = conn.execute(
                    select(db.devices.c.status).where(db.devices.c.device_id == device.device_id)
                ).scalar_one()
            return json.loads(raw) if raw else {}

        deadline = time.monotonic() + 30
        while status().get("config_version") != 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status()["online"] is True and status()["config_version"] == 5

        body = json.dumps({"case_no": "QZ-STACK-1"}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/evaluate", data=body,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.loads(answer.read()) == {"opened": "QZ-STACK-1"}
        stack.stop_kiosks()
        assert kiosk.process.returncode == 0
        log = (tmp_path / device.device_id / "kiosk.log").read_text()
        assert "ks-stack-01 ready, first frame" in log


def test_without_a_chinese_font_the_kiosk_names_the_package(tmp_path):
    import os
    import subprocess
    import sys

    settings = tmp_path / "kiosk.json"
    settings.write_text(json.dumps({"device_id": "ks-1", "key": "00" * 32, "http_port": 0,
                                    "data_dir": str(tmp_path / "data")}))  # fmt: skip
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "HCP_KIOSK_FONT": "/nonexistent.ttc"}
    result = subprocess.run(
        [sys.executable, "-m", "kiosk", "--settings", str(settings), "--headless"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "hcp kiosk: 未找到中文字体 / no Chinese (CJK) font found: install fonts-wqy-microhei "
        "(sudo apt install fonts-wqy-microhei) (HCP_KIOSK_FONT=/nonexistent.ttc does not exist)"
    )


def test_a_bad_settings_file_stops_with_its_reason(tmp_path):
    import subprocess
    import sys

    settings = tmp_path / "kiosk.json"
    settings.write_text(json.dumps({"device_id": "ks-1", "key": "00" * 32, "pin": "1"}))
    result = subprocess.run(
        [sys.executable, "-m", "kiosk", "--settings", str(settings), "--headless"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == "hcp kiosk: unknown setting 'pin'"
