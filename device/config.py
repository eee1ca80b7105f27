# The device's settings: one dict of defaults, overlaid by the provisioned
# file (written by `hcp provision`) in the data folder, which survives
# re-flashing of the app.
import json

DEFAULTS = {
    "device_id": None,  # provisioned
    "key": None,  # HMAC key, hex; provisioned
    "board": "esp32s3_keypad",
    "data_dir": "/data",
    "wifi_ssid": None,
    "wifi_password": None,
    "broker_host": None,  # provisioned
    "broker_port": 1883,
    "broker_user": None,
    "broker_password": None,
    "keepalive_s": 60,
    "timeout_ms": 5000,  # every socket operation
    "batch_size": 50,
    # records held unacknowledged at most: their index is in RAM (about 11
    # bytes each); 3,000 was measured to fit a 96 KB heap with the firmware
    # frozen. Beyond it ratings are refused as on a full flash. None: no bound
    "max_pending": 3000,
    "ack_timeout_ms": 10000,
    "min_batch_interval_ms": 200,
    "status_every_ms": 60000,
    # after a level key press: the tag screen (if tags are configured for the
    # level) and the thank-you, then the "result" event; the same for every level
    "confirm_ms": 10000,
    "firmware": "0.1.0",
    # survival of the main loop (device/main.py)
    "watchdog_ms": 30000,  # machine.WDT timeout, fed every pass; 0 = no watchdog
    "loop_backoff_max_ms": 2000,  # longest pause after passes that keep failing
    "crash_write_every_ms": 60000,  # the same error is written to flash at most this often
    "safe_mode_hold_ms": 3000,  # key 0 held this long at boot: safe mode; 0 = never
    "wifi_retry_ms": 2000,  # first Wi-Fi rejoin delay, doubled after each failure
    "wifi_retry_max_ms": 300000,  # longest delay between two rejoins
    # wall clock and commands (device/ntp.py, device/commands.py)
    "rtc_battery": False,  # the board's RTC has a battery: a plausible time at boot is "rtc"
    "ntp_host": "ntp.aliyun.com",  # "" disables NTP
    "ntp_every_ms": 21600000,  # NTP sync again after this long (6 h)
    "ntp_retry_ms": 60000,  # after a failed NTP query, the next one
    "ntp_timeout_ms": 2000,  # bound on one NTP query's socket operations
    "identify_ms": 30000,  # how long `identify` shows the device id (default)
    "window_uart": None,  # UART number of the window-PC link (None: no window PC)
    "window_baud": 115200,
    # a keypad wired to a window PC rates only cases the PC started, unless
    # walk-up ratings (no case) are allowed; a keypad without a PC link has
    # no cases, so every rating it makes is a walk-up one
    "walk_up": False,
}

REQUIRED = ("device_id", "key", "broker_host")


def load(path=None, overrides=None):
    settings = dict(DEFAULTS)
    if path:
        try:
            with open(path) as f:
                settings.update(json.loads(f.read()))
        except OSError:
            pass  # not provisioned yet: REQUIRED check below says what is missing
    if overrides:
        settings.update(overrides)
    missing = [name for name in REQUIRED if not settings.get(name)]
    if missing:
        raise ValueError("not provisioned: missing " + ", ".join(missing))
    return settings
