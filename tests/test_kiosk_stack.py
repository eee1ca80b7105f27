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
