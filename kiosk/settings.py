"""The kiosk's settings: one dict of defaults, overridden by a JSON file and
the command line (`hcp kiosk`). Documented in docs/technician-guide.md."""

from __future__ import annotations

import json
from pathlib import Path

DEFAULTS = {
    "device_id": None,  # provisioned: the id the collector knows (kind kiosk)
    "key": None,  # provisioned: 64 hex digits, the device key
    "broker_host": "127.0.0.1",
    "broker_port": 1883,
    "broker_user": None,  # default: device_id
    "broker_password": None,  # default: derived from the key
    "data_dir": "kiosk-data",
    "http_port": 8766,  # local trigger API on 127.0.0.1; 0: off
    "technician_pin": None,  # provisioned: 4..8 digits; without it the screen stays locked
    "idle_s": 60,  # no touch this long: back to the start, the rating discarded
    "thanks_s": 12,  # the thank-you screen, the same for every level
    "case_wait_s": 120,  # a case handed over waits this long for the citizen
    "large_type": False,
    "language": "zh",  # zh or en
    "fullscreen": False,
    "width": 1280,
    "height": 800,
    "scan_gap_ms": 40,  # keystrokes closer than this are a barcode scanner
    "batch_size": 50,
    "ack_timeout_ms": 10000,
    "min_batch_interval_ms": 200,
    "status_every_ms": 60000,
    "timeout_ms": 3000,
    "keepalive_s": 60,
    "firmware": "kiosk-0.1.0",
}
REQUIRED = ("device_id", "key")


class SettingsError(ValueError):
    pass


def load(path: str | None = None, overrides: dict | None = None) -> dict:
    """DEFAULTS, then the JSON file at `path`, then `overrides` (None values skipped)."""
    settings = dict(DEFAULTS)
    if path:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SettingsError(f"{path}: cannot read the settings: {exc}") from None
        if not isinstance(data, dict):
            raise SettingsError(f"{path}: must hold a JSON object")
        settings.update(data)
    for name, value in (overrides or {}).items():
        if value is not None:
            settings[name] = value
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r}")
    for name in REQUIRED:
        if not settings[name]:
            raise SettingsError(f"{name}: is required (provisioned)")
    key = settings["key"]
    if not isinstance(key, str) or len(key) != 64:
        raise SettingsError("key: must be 64 hex digits")
    try:
        bytes.fromhex(key)
    except ValueError:
        raise SettingsError("key: must be 64 hex digits") from None
    pin = settings["technician_pin"]
    if pin is not None and (
        not isinstance(pin, str) or not pin.isdigit() or not 4 <= len(pin) <= 8
    ):
        raise SettingsError("technician_pin: must be 4..8 digits")
    if settings["language"] not in ("zh", "en"):
        raise SettingsError("language: must be zh or en")
    return settings
