# Board wiring for the window keypad. On a board, boot runs main(); the
# simulators call build() with their stand-ins for `machine` and `network`,
# so the same firmware code runs in tests and in the demo.
#
# Survival (unattended for months): every exception of one pass of the main
# loop is caught, counted and noted in the crash file (CRASH_FILE in the data
# folder, written by temp file and rename); a pass that keeps failing backs
# off; the watchdog (machine.WDT where the port has it) is fed every pass, so
# only a hang resets the board. Key 0 held at boot starts safe mode (no
# ratings, no sync) for a technician. The data folder must be on littlefs.
import binascii
import json
import os
import sys
import time

from device.app import KeypadApp
from device.commands import Commands
from device.compat import sleep_ms, ticks_add, ticks_diff, ticks_ms
from device.mqtt import MQTTClient
from device.ntp import NTP, WallClock, board_clock
from device.ntp import query as ntp_query_socket
from device.store import Store
from device.sync import Sync
from hardware.keys import Keys
from protocols import messages, sign

NORMAL = "normal"
SAFE = "safe"  # key 0 held at boot
REFUSED = "refused"  # the data folder is not on littlefs
FAILED = "failed"  # the normal start raised (a damaged file, say): noted, then halted

CRASH_FILE = "crashes.json"  # {"crashes": n, "last": [text, ...]} in the data folder
CRASH_ENTRIES = 4
MAX_ERROR = 120  # characters of one crash text (status.last_error)
DESIRED_FILE = "desired.json"
LOOP_MS = 10  # pause between two passes of the main loop
MAX_INT = 2147483647  # status integers (protocols.messages)

SCREENS = {
    SAFE: ("安全模式", "暂停评价", "请联系技术人员"),
    REFUSED: ("文件系统不支持", "暂停评价", "请联系技术人员"),
    FAILED: ("启动失败", "暂停评价", "请联系技术人员"),
}


def write_small(path, text):
    """Write a small file so that a power cut leaves the old file or the new
    one, never a torn one: write a temp file, flush (littlefs' durability
    barrier), rename over the old file (atomic on littlefs)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
    try:
        os.rename(tmp, path)
    except OSError:  # FAT refuses to rename onto a file (only met when refusing FAT)
        os.remove(path)
        os.rename(tmp, path)


def read_json(path):
    """The object in a small file, or None. Falls back to the temp file that
    write_small left when a power cut came between its remove and rename (FAT)."""
    for name in (path, path + ".tmp"):
        try:
            with open(name) as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            pass
    return None


def short_text(text, limit=MAX_ERROR):
    """Printable text of at most `limit` characters (a status string)."""
    out = []
    for ch in text[: limit * 2]:
        code = ord(ch)
        if code < 32 or code == 127 or 0xD800 <= code <= 0xDFFF:
            ch = " "
        out.append(ch)
    text = "".join(out).strip()[:limit]
    return text or "?"


def describe(where, exc):
    """'sync: OSError: [Errno 104] ECONNRESET' - where a pass failed, in short."""
    try:
        detail = str(exc)
    except Exception:
        detail = ""
    text = where + ": " + type(exc).__name__
    if detail:
        text += ": " + detail
    return short_text(text)


def _count(value):
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return min(value, MAX_INT)
    return None


def _random(n):
    """A number 0..n for backoff jitter (keypads of one hall must not retry in step)."""
    if n <= 0:
        return 0
    try:
        return int.from_bytes(os.urandom(4), "big") % (n + 1)
    except (AttributeError, NotImplementedError, OSError):
        return (ticks_ms() * 7919) % (n + 1)


class CrashLog:
    """The crash count since provisioning and the last few crash texts, on flash.

    A pass that keeps failing the same way is noted in RAM every time but
    written at most every `write_every_ms`, so a crash loop does not wear the
    flash; a new text is written at once."""

    def __init__(self, path, write_every_ms=60000):
        self.path = path
        self.write_every_ms = write_every_ms
        data = read_json(path)
        if not isinstance(data, dict):
            data = {}
        self.count = _count(data.get("crashes")) or 0
        last = data.get("last")
        self.entries = []
        if isinstance(last, list):
            self.entries = [short_text(t) for t in last if isinstance(t, str)][-CRASH_ENTRIES:]
        self._written_at = None
        self._written_text = self.entries[-1] if self.entries else None

    @property
    def last_error(self):
        return self.entries[-1] if self.entries else None

    def note(self, text, now_ms):
        text = short_text(text)
        self.count += 1
        self.entries.append(text)
        del self.entries[:-CRASH_ENTRIES]
        if (
            text != self._written_text
            or self._written_at is None
            or ticks_diff(now_ms, self._written_at) >= self.write_every_ms
        ):
            self.save(now_ms)

    def save(self, now_ms):
        try:
            write_small(self.path, json.dumps({"crashes": self.count, "last": self.entries}))
        except OSError:
            return False  # a full or broken flash: the count stays in RAM
        self._written_at = now_ms
        self._written_text = self.entries[-1] if self.entries else None
        return True


class Device:
    def __init__(
        self,
        settings,
        keys,
        wlan,
        store,
        client,
        sync,
        app,
        crash_log=None,
        mode=NORMAL,
        wdt=None,
        boot_ms=0,
    ):
        self.settings = settings
        self.keys = keys
        self.wlan = wlan
        self.store = store  # None in safe mode and on a refused filesystem
        self.client = client  # None ditto
        self.sync = sync  # None ditto
        self.app = app  # None ditto
        self.crash_log = crash_log
        self.mode = mode
        self.wdt = wdt  # machine.WDT, fed every pass (None: the port has none)
        self.config_version = None  # the version of the config applied
        self.status_extra = None  # fn() -> dict (build sets it)
        self.tasks = []  # fn(now_ms) run each normal pass: commands, NTP (build sets them)
        self.screen_overlay = None  # fn() -> lines or None: the identify screen
        self.window_link = None  # device.link.WindowLink when a window PC is wired
        self.display = None  # device.display.Screen when the board has a display
        self.commands = None  # device.commands.Commands (normal mode)
        self.ntp = None  # device.ntp.NTP (normal mode)
        self.failures = 0  # passes failed in a row
        self.wifi_joins = 0  # rejoin attempts since boot
        self._wifi_tries = 0
        self._wifi_next = None  # when the next rejoin may start (ticks)
        self._where = "keys"

    @property
    def safe_mode(self):
        return self.mode == SAFE

    def screen(self):
        if self.mode in SCREENS:
            return SCREENS[self.mode]
        if self.screen_overlay is not None:
            lines = self.screen_overlay()
            if lines:
                return lines
        return self.app.screen()

    def step(self, now_ms):
        """One pass of the main loop: keys, app timers, then sync when the link is up.
        Exceptions leave it; run_once() is the pass that catches them."""
        self._where = "keys"
        pressed = self.keys.scan(now_ms)
        if self.mode != NORMAL:
            return  # no ratings, no sync: the screen says so
        self._where = "app"
        for index in pressed:
            self.app.press(index, now_ms)
        self.app.tick(now_ms)
        if self.window_link is not None:
            # right after the app's timers, before sync: a result goes out in this
            # pass, at the same moment for every level
            self._where = "window"
            self.window_link.poll(now_ms)
        self._where = "wifi"
        if self._link(now_ms):
            self._where = "sync"
            self.sync.step(now_ms)
        elif self.client.connected:
            self.client.close()  # the link is gone; reconnect when it is back
        self._where = "tasks"
        for task in self.tasks:
            task(now_ms)

    def run_once(self, now_ms):
        """One pass that nothing escapes: feed the watchdog, step, and on an
        exception count it and note it in the crash file. Returns how long to
        pause before the next pass (longer while passes keep failing)."""
        if self.wdt is not None:
            self.wdt.feed()
        if self.display is not None:
            self.display.tick(self, now_ms)  # draws screen() when it changed, never raises
        try:
            self.step(now_ms)
        except Exception as exc:  # nothing may stop the keypad
            self.failures += 1
            try:
                self.crash_log.note(describe(self._where, exc), now_ms)
            except Exception:  # e.g. MemoryError while formatting
                self.crash_log.count += 1
            if isinstance(exc, MemoryError):
                try:
                    import gc

                    gc.collect()
                except ImportError:
                    pass
            limit = self.settings["loop_backoff_max_ms"]
            return min(LOOP_MS << min(self.failures, 16), max(limit, LOOP_MS))
        self.failures = 0
        return LOOP_MS

    def _link(self, now_ms):
        """True when Wi-Fi is up; otherwise rejoin now and then, with
        exponential backoff and jitter (elapsed time by ticks_diff only)."""
        if self.wlan.isconnected():
            self._wifi_tries = 0
            self._wifi_next = None
            return True
        ssid = self.settings.get("wifi_ssid")
        if not ssid:
            return False
        if self._wifi_next is not None and ticks_diff(now_ms, self._wifi_next) < 0:
            return False
        self.join_later(now_ms)
        self.wifi_joins += 1
        try:
            if self._wifi_tries > 1:
                self.wlan.disconnect()  # ESP32: connect() refuses while one is pending
        except (AttributeError, OSError):
            pass
        try:
            self.wlan.connect(ssid, self.settings.get("wifi_password"))
        except OSError:
            pass  # the radio is busy: the next try comes after the backoff
        return False

    def join_later(self, now_ms):
        """Schedule the next rejoin: wifi_retry_ms doubled per try, at most
        wifi_retry_max_ms, plus up to half of it again at random."""
        base = max(1, self.settings["wifi_retry_ms"])
        top = max(base, self.settings["wifi_retry_max_ms"])
        delay = base
        for _ in range(self._wifi_tries):
            delay *= 2
            if delay >= top:
                delay = top
                break
        self._wifi_tries += 1
        self._wifi_next = ticks_add(now_ms, delay + _random(delay // 2))

    def status(self):
        """The status message as it would go up now (also when there is no
        sync, in safe mode: for a technician at the serial console)."""
        if self.sync is not None:
            return self.sync.status()
        fields = {"fw": self.settings["firmware"]}
        if self.status_extra:
            fields.update(self.status_extra())
        return messages.status(True, **fields)

    def shutdown(self):
        """Orderly stop (not a power cut): say goodbye to the broker."""
        if self.client is None:
            return
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
    # The base clock on CPython (the simulation): the host's own clock, which
    # the host keeps by NTP. On a board the base is device.ntp.board_clock.
    now = time.time()
    return now, ("ntp" if now > 1700000000 else "unset")


def _statvfs_free(folder):
    st = os.statvfs(folder)
    return (st[1] or st[0]) * st[4]  # fragment size * blocks free to us


def build(
    machine,
    network,
    board,
    settings,
    wall_clock=None,
    check_filesystem=True,
    ntp_query=None,
    display=None,
    font_file=None,
):
    """Wire the keypad. check_filesystem=False skips the littlefs check: the
    simulators pass it explicitly, their data folder is on the host's disk.
    wall_clock: a stand-in base clock () -> (seconds, source); ntp_query: a
    stand-in fn(host, timeout_ms) -> seconds. On CPython NTP runs only with
    a stand-in, and the host's clock is the base (device/ntp.py). display: a
    panel to draw on instead of the board's (the simulators'); font_file:
    the bitmap font (default device.display.FONT_FILE)."""
    boot_ms = ticks_ms()
    pull = getattr(machine.Pin, "PULL_UP", None)
    pins = [machine.Pin(n, machine.Pin.IN, pull) for n in board.KEY_PINS]
    active = 0 if board.KEYS_ACTIVE_LOW else 1
    keys = Keys(pins, active_low=board.KEYS_ACTIVE_LOW)
    data_dir = settings["data_dir"]
    try:
        os.mkdir(data_dir)
    except OSError:
        pass  # already there
    crash_log = CrashLog(data_dir + "/" + CRASH_FILE, settings["crash_write_every_ms"])
    mode = NORMAL
    from device import startup

    if startup.held_at_boot(pins[0], active, settings["safe_mode_hold_ms"]):
        mode = SAFE
    problem = startup.filesystem_problem(data_dir) if check_filesystem else None
    if problem:
        mode = REFUSED
        if crash_log.last_error != short_text(problem):
            crash_log.note(problem, boot_ms)  # once, not on every boot
        print("hcp:", problem)
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    device_id = settings["device_id"]
    key = binascii.unhexlify(settings["key"])
    cause = startup.reset_cause(machine)
    store = client = sync = app = None
    boot_id = _boot_id()
    firmware = startup.running_firmware(data_dir, settings["firmware"])
    if mode == NORMAL:
        try:
            store = Store(data_dir, max_pending=settings["max_pending"])
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
                firmware=firmware,  # in the will too, set before the first connect
                batch_size=settings["batch_size"],
                ack_timeout_ms=settings["ack_timeout_ms"],
                min_interval_ms=settings["min_batch_interval_ms"],
                status_every_ms=settings["status_every_ms"],
                boot_id=boot_id,
            )
            on_board = sys.implementation.name == "micropython"
            base = wall_clock or (board_clock(settings["rtc_battery"]) if on_board else _wall_clock)
            rtc_class = getattr(machine, "RTC", None)
            clock = WallClock(base, rtc_class() if rtc_class else None)
            app = KeypadApp(
                device_id,
                key,
                store,
                clock,
                boot_id,
                boot_ms=boot_ms,
                confirm_ms=settings["confirm_ms"],
                # walk-up ratings: always without a window PC, a setting with one
                walk_up=settings["walk_up"] or settings.get("window_uart") is None,
            )
        except Exception as exc:  # the start itself failed: note it, do not boot-loop
            store = client = sync = app = None
            mode = FAILED
            crash_log.note(describe("boot", exc), boot_ms)
            print("hcp:", crash_log.last_error)
    device = Device(settings, keys, wlan, store, client, sync, app, crash_log, mode)
    if app and settings.get("window_uart") is not None:
        try:
            from device.link import WindowLink  # only keypads wired to a window PC load it

            device.window_link = WindowLink(
                startup.window_uart(machine, board, settings), app, device_id, firmware
            )
        except Exception as exc:  # no link is better than no keypad
            crash_log.note(describe("window", exc), boot_ms)
    if display is not None or getattr(board, "DISPLAY", None):
        try:
            from device.display import attach  # only keypads with a display load it

            attach(device, machine, board, display, font_file)
        except Exception as exc:  # no display is better than no keypad
            crash_log.note(describe("display", exc), boot_ms)
    startup.forget()  # the boot helpers are done: their code is garbage now
    uptime = [0, boot_ms]  # ms counted, ticks when last counted (as KeypadApp does)

    def uptime_ms():
        if app:
            return app.uptime_ms(ticks_ms())
        now = ticks_ms()
        elapsed = ticks_diff(now, uptime[1])
        if elapsed > 0:
            uptime[0] += elapsed
            uptime[1] = now
        return uptime[0]

    if app:
        # The last desired configuration is kept on flash: a persistent session
        # does not resend the retained config after a reboot.
        desired_path = data_dir + "/" + DESIRED_FILE

        def apply(config):
            app.configure(config)
            version = config.get("version")
            if _count(version) == version:
                device.config_version = version

        desired = read_json(desired_path)
        if isinstance(desired, dict):
            try:
                apply(desired)
            except (TypeError, ValueError, KeyError):
                pass  # a file from an older firmware: the retained config comes again

        def on_config(config):
            apply(config)
            write_small(desired_path, json.dumps(config))

        sync.on_config = on_config

        commands = Commands(
            device_id, sync, store, clock, machine, data_dir, settings["identify_ms"]
        )
        sync.on_command = commands
        ntp = NTP(
            settings["ntp_host"],
            clock,
            settings["ntp_every_ms"],
            settings["ntp_retry_ms"],
            settings["ntp_timeout_ms"],
            query=ntp_query or (ntp_query_socket if on_board else None),
            link=wlan.isconnected,
        )
        device.commands = commands
        device.ntp = ntp
        device.tasks = [commands.tick, ntp.tick]
        device.screen_overlay = commands.screen

    def status_extra():
        fields = {
            "boot_id": boot_id,
            "uptime_ms": uptime_ms(),
            "crashes": min(crash_log.count, MAX_INT),
            "safe_mode": mode == SAFE,
        }
        if app:
            fields["clock"] = app.wall_clock()[1]
            fields["storage_full"] = app.storage_full
        if crash_log.last_error:
            fields["last_error"] = crash_log.last_error
        if cause:
            fields["reset_cause"] = cause
        if device.config_version is not None:
            fields["config_version"] = device.config_version
        if device.window_link is not None:  # 主动评价率 = rated / started
            fields["cases_started"] = min(device.window_link.cases_started, MAX_INT)
            fields["cases_rated"] = min(device.window_link.cases_rated, MAX_INT)
        try:
            import gc

            fields["heap_free"] = min(gc.mem_free(), MAX_INT)
        except (ImportError, AttributeError):
            pass  # CPython has no mem_free
        try:
            fields["flash_free"] = min(_statvfs_free(data_dir), MAX_INT)
        except (AttributeError, OSError, IndexError, TypeError):
            pass
        try:
            rssi = wlan.status("rssi")  # dBm
        except (AttributeError, ValueError, OSError, TypeError):
            rssi = None  # the port cannot tell
        if isinstance(rssi, int) and not isinstance(rssi, bool) and rssi <= 0:
            fields["signal"] = max(rssi, -150)  # the contract's range; nonsense is left out
        return fields

    device.status_extra = status_extra
    if sync:
        sync.status_extra = status_extra
    if mode == NORMAL and settings.get("wifi_ssid") and not wlan.isconnected():
        device._link(boot_ms)  # the first join now; rejoins from the loop
    return device


def start_watchdog(device, machine):
    """Start machine.WDT with the watchdog_ms setting, where the port has one.
    Not in safe mode: a technician at the console must not be reset. Once
    started it cannot be stopped (ESP32, RP2040), so main() starts it last."""
    timeout = device.settings["watchdog_ms"]
    wdt_class = getattr(machine, "WDT", None)
    if device.mode == SAFE or not timeout or wdt_class is None:
        return None
    try:
        device.wdt = wdt_class(timeout=timeout)
    except ValueError:  # RP2040: at most 8388 ms
        device.wdt = wdt_class(timeout=min(timeout, 8000))
    if device.commands is not None:
        device.commands.wdt = device.wdt  # fed while an update downloads
    return device.wdt


def main():
    import machine
    import network

    from device import config

    settings = config.load("/data/config.json")
    board = __import__("hardware.boards." + settings["board"], None, None, ["KEY_PINS"])
    device = build(machine, network, board, settings)
    # the mode, the firmware really running and why (device/update.py)
    print(__import__("device.update", None, None, ["boot_line"]).boot_line(device), device.screen())
    start_watchdog(device, machine)
    while True:
        sleep_ms(device.run_once(ticks_ms()))
