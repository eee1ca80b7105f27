"""`hcp kiosk`: the hall self-service kiosk (kiosk/), full screen or windowed."""

from __future__ import annotations

import sys

from kiosk import settings as kiosk_settings


def register(commands) -> None:
    parser = commands.add_parser("kiosk", help="the hall self-service kiosk (pygame-ce)")
    parser.add_argument("--settings", help="JSON file of kiosk settings")
    parser.add_argument("--device-id", help="the kiosk's device id (provisioned)")
    parser.add_argument("--key", help="the kiosk's device key, 64 hex digits (provisioned)")
    parser.add_argument("--broker-host")
    parser.add_argument("--broker-port", type=int)
    parser.add_argument("--data-dir", help="the kiosk's store (default kiosk-data)")
    parser.add_argument("--http-port", type=int, help="local trigger API on 127.0.0.1; 0: off")
    parser.add_argument("--pin", help="the technician PIN (4..8 digits)")
    screen = parser.add_mutually_exclusive_group()
    screen.add_argument("--fullscreen", action="store_true", default=None)
    screen.add_argument("--windowed", action="store_true", help="a window (the default)")
    screen.add_argument(
        "--headless", action="store_true", help="no display (SDL dummy driver): tests, the demo"
    )
    parser.add_argument("--large-type", action="store_true", default=None)
    parser.add_argument("--language", choices=["zh", "en"])
    parser.add_argument("--duration", type=float, help="stop by itself after N seconds")
    parser.set_defaults(handler=run)


def run(args) -> int:
    overrides = {
        "device_id": args.device_id,
        "key": args.key,
        "broker_host": args.broker_host,
        "broker_port": args.broker_port,
        "data_dir": args.data_dir,
        "http_port": args.http_port,
        "technician_pin": args.pin,
        "fullscreen": False if args.windowed or args.headless else args.fullscreen,
        "large_type": args.large_type,
        "language": args.language,
    }
    try:
        settings = kiosk_settings.load(args.settings, overrides)
    except kiosk_settings.SettingsError as exc:
        print(f"hcp kiosk: {exc}", file=sys.stderr)
        return 2
    from kiosk.main import run as run_kiosk

    return run_kiosk(settings, headless=args.headless, duration=args.duration)
