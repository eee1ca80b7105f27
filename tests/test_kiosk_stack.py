"""`python -m kiosk` (what `hcp kiosk` runs) as its own process, started by
LocalStack as the demo starts it: it comes up headless with the Chinese UI,
takes the collector's config, reports its status, and its local API opens a
finished case. On amqtt as the demo runs it (open), and on Mosquitto with the
stack's access control on, as in production: the kiosk logs in with its
derived password, the collector with its login, the config goes out with the
fleet agent's."""

import json
import secrets
import time
import urllib.request

import pytest
from sqlalchemy import select

from hcp.broker import free_port
from hcp.stack import Device, LocalStack
from kiosk import demo_content
from protocols import messages, topics
from sync_server import db
from tests.harness.broker import assert_access_control, connect, require_kind


@pytest.mark.parametrize("kind", ["amqtt", "secured-mosquitto"])
def test_the_kiosk_process_in_the_local_stack(tmp_path, kind):
    require_kind(kind)
    device = Device("ks-stack-01", secrets.token_hex(32), kind="kiosk")
    port = free_port()
    locked = kind == "secured-mosquitto"
    broker = "mosquitto" if locked else kind
    with LocalStack(tmp_path, broker, devices=[device], access_control=locked) as stack:
        assert stack.broker.access_control is locked
        assert_access_control(stack.broker, (device.device_id, device.key_hex))
        with stack.engine.connect() as conn:
            stored_kind = conn.execute(
                select(db.devices.c.kind).where(db.devices.c.device_id == device.device_id)
            ).scalar_one()
        assert stored_kind == "kiosk"
        config = demo_content.config(5, "https://hcp.example.cn/followup")
        if locked:  # the fleet agent's login writes configs (demo_content's client has none)
            fleet = connect(stack.broker, stack.broker.fleet_login(), "hcp-fleet")
            body = messages.encode_signed(config, bytes.fromhex(device.key_hex))
            topic = topics.topic(device.device_id, topics.DOWN_CONFIG)
            fleet.publish(topic, body, qos=1, retain=True).wait_for_publish(5)
            fleet.disconnect()
            fleet.loop_stop()
        else:
            demo_content.publish_config(stack.broker.host, stack.broker.port,
                                        device.device_id, device.key_hex, config)  # fmt: skip
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


def test_access_control_needs_mosquitto(tmp_path):
    with pytest.raises(ValueError) as err:
        LocalStack(tmp_path, "amqtt", access_control=True)
    assert str(err.value) == (
        "access control needs Mosquitto; the amqtt broker runs open "
        "(docs/architecture.md, 'Testing on real parts')"
    )


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
