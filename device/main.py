# Board wiring for the window keypad. On a board, boot runs main(); the
# simulators call build() with their stand-ins for `machine` and `network`,
# so the same firmware code runs in tests and in the demo.
import binascii
import json
import os
import time

from device.app import KeypadApp
from device.compat import sleep_ms, ticks_ms
from device.mqtt import MQTTClient
from device.store import Store
from device.sync import Sync
from hardware.keys import Keys
from protocols import sign


class Device:
    def __init__(self, settings, keys, wlan, store, client, sync, app):
        self.settings = settings
        self.keys = keys
        self.wlan = wlan
        self.store = store
        self.client = client
        self.sync = sync
        self.app = app

    def step(self, now_ms):
        """One pass of the main loop: keys, app timers, then sync when the link is up."""
        for index in self.keys.scan(now_ms):
            self.app.press(index, now_ms)
        self.app.tick(now_ms)
        if self.wlan.isconnected():
            self.sync.step(now_ms)
        elif self.client.connected:
            self.client.close()  # the link is gone; reconnect when it is back

    def shutdown(self):
        """Orderly stop (not a power cut): say goodbye to the broker."""
        try:
            self.client.disconnect()
        except OSError:
            pass


def _boot_id():
    try:
        return binascii.hexlify(os.urandom(4)).decode()
    except (AttributeError, NotImplementedError):
        return "%08x" % (ticks_ms() & 0xFFFFFFFF)


def _wall_clock():
    # Until NTP sets it, a board's RTC starts at its epoch: marked "unset" so
    # the collector corrects the time from boot_id and uptime_ms.
    now = time.time()
    return now, ("ntp" if now > 1700000000 else "unset")


# machine.reset_cause() values as the ESP32 port numbers them
_RESET_CAUSES = {1: "power_on", 2: "hard", 3: "watchdog", 4: "deep_sleep", 5: "soft"}


def build(machine, network, board, settings, wall_clock=None):
    pull = getattr(machine.Pin, "PULL_UP", None)
    pins = [machine.Pin(n, machine.Pin.IN, pull) for n in board.KEY_PINS]
    keys = Keys(pins, active_low=board.KEYS_ACTIVE_LOW)
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if settings.get("wifi_ssid") and not wlan.isconnected():
        wlan.connect(settings["wifi_ssid"], settings["wifi_password"])
    store = Store(settings["data_dir"])
    device_id = settings["device_id"]
    key = binascii.unhexlify(settings["key"])
    # The broker knows a device by its id and a password derived from its key
    # (protocols.sign.mqtt_password) unless the settings name others.
    client = MQTTClient(
        device_id,
        settings["broker_host"],
        port=settings["broker_port"],
        user=settings.get("broker_user") or device_id,
        password=settings.get("broker_password") or sign.mqtt_password(key),
        keepalive=settings["keepalive_s"],
        timeout_ms=settings["timeout_ms"],
    )
    sync = Sync(
        client,
        store,
        device_id,
        key,
        firmware=settings["firmware"],
        batch_size=settings["batch_size"],
        ack_timeout_ms=settings["ack_timeout_ms"],
        min_interval_ms=settings["min_batch_interval_ms"],
        status_every_ms=settings["status_every_ms"],
    )
    app = KeypadApp(
        device_id,
        key,
        store,
        wall_clock or _wall_clock,
        _boot_id(),
        boot_ms=ticks_ms(),
        confirm_ms=settings["confirm_ms"],
    )
    # The last desired configuration is kept on flash: a persistent session
    # does not resend the retained config after a reboot.
    desired_path = settings["data_dir"] + "/desired.json"
    try:
        with open(desired_path) as f:
            app.configure(json.loads(f.read()))
    except (OSError, ValueError):
        pass

    def on_config(config):
        app.configure(config)
        with open(desired_path, "w") as f:
            f.write(json.dumps(config))

    sync.on_config = on_config
    reset_cause = getattr(machine, "reset_cause", None)
    cause = _RESET_CAUSES.get(reset_cause(), "other") if reset_cause else None

    def status_extra():
        fields = {
            "boot_id": app.boot_id,
            "uptime_ms": app.uptime_ms(ticks_ms()),
            "clock": app.wall_clock()[1],
        }
        if cause:
            fields["reset_cause"] = cause
        try:
            fields["signal"] = wlan.status("rssi")  # dBm
        except (AttributeError, ValueError, OSError, TypeError):
            pass  # the port cannot tell
        return fields

    sync.status_extra = status_extra
    return Device(settings, keys, wlan, store, client, sync, app)


def main():
    import machine
    import network

    from device import config

    settings = config.load("/data/config.json")
    board = __import__("hardware.boards." + settings["board"], None, None, ["KEY_PINS"])
    device = build(machine, network, board, settings)
    while True:
        device.step(ticks_ms())
        sleep_ms(10)
