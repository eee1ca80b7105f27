"""The fleet's rows of the access matrix: configs and commands (fleet: admins
and technicians), removal, bundles and rollouts (firmware: admins only)."""

from sync_server import firmware

ROUTES = [
    ("GET", "/fleet", "fleet", None),
    ("GET", "/fleet/kp-01", "fleet", None),
    ("POST", "/fleet/kp-01/config", "fleet", {"window_id": "A01", "hours": "1-5 08:30-12:00"}),
    ("POST", "/fleet/kp-01/command", "fleet", {"cmd": "identify", "expires_h": "2"}),
    ("POST", "/fleet/kp-01/remove", "firmware", {"confirm": "kp-01"}),
    ("GET", "/firmware", "firmware", None),
    ("POST", "/firmware/rollouts", "firmware", {"version": "0.2.0", "group": "devices:kp-01", "percent": "100", "health_s": "300", "url": "http://127.0.0.1:8080/"}),
    ("POST", "/firmware/rollouts/1/stop", "firmware", {}),
]  # fmt: skip
GRANTS = {"admin": {"fleet", "firmware"}, "technician": {"fleet"}}
KNOWN = {
    "/fleet/<device_id>": "/fleet/kp-01",
    "/fleet/<device_id>/config": "/fleet/kp-01/config",
    "/fleet/<device_id>/command": "/fleet/kp-01/command",
    "/fleet/<device_id>/remove": "/fleet/kp-01/remove",
    "/firmware/rollouts/<int:rollout_id>/stop": "/firmware/rollouts/1/stop",
}
ELSEWHERE = {
    # the devices' firmware download, without a login (its integrity comes from
    # the signed update command): tests/test_firmware.py
    "/fw/<version>/manifest.json",
    "/fw/<version>/chunk",
}


def build(app):
    engine = app.extensions["hcp_engine"]
    with engine.begin() as conn:
        firmware.add_bundle(conn, "0.2.0", {"device/app.mpy": b"M" * 5000}, "test")
        firmware.start_rollout(
            conn, "0.2.0", "devices:kp-01", 100, "test", "http://127.0.0.1:8080/"
        )
