"""For tests and the demo only: a stand-in for MicroPython's `machine` module.

Each SimMachine is one board's worth of hardware, so several simulated
devices can live in one process. The firmware calls it exactly as it calls
the real module (machine.Pin(n, machine.Pin.IN, machine.Pin.PULL_UP), pin());
the simulator drives pin levels with SimPin.drive().

SimMachine.RTC stands in for machine.RTC (it records what was set).
SimMachine.WDT stands in for machine.WDT: once started, a board that is not
fed within its timeout resets (SimMachine.reset: the reset cause becomes
WDT_RESET and the on_reset callbacks run; the simulated keypad reboots its
firmware from them, as a board would).
"""

from __future__ import annotations

import threading
import time


class _PinBase:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2

    def _setup(self, pin_id, pull):
        self.id = pin_id
        # an input with a pull-up floats high: a released key reads 1
        self._level = 1 if pull == self.PULL_UP else 0
        self._lock = threading.Lock()

    def drive(self, level: int) -> None:
        """Set the electrical level seen on the pin (what a key press does)."""
        with self._lock:
            self._level = 1 if level else 0

    def value(self, level=None):
        if level is None:
            return self._level
        self.drive(level)
        return None

    __call__ = value


class SimMachine:
    """One simulated board: its pins, reset cause and unique id."""

    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5

    def __init__(self, unique_id: bytes = b"\x00\x01\x02\x03\x04\x05"):
        self.pins: dict[int, _PinBase] = {}
        self._unique_id = unique_id
        self._reset_cause = self.PWRON_RESET
        board = self

        class Pin(_PinBase):
            def __new__(cls, pin_id, mode=-1, pull=-1, value=None):
                pin = board.pins.get(pin_id)
                if pin is None:
                    pin = object.__new__(cls)
                    pin._setup(pin_id, pull)
                    board.pins[pin_id] = pin
                return pin

        self.Pin = Pin
        self.resets = 0  # resets since the simulation started
        self.on_reset: list = []  # callables run (in the watchdog's thread) on a reset
        self.watchdog = None  # the WDT started on the running boot, if any

        class WDT:
            """machine.WDT(id=0, timeout=5000): feed() it or the board resets."""

            def __init__(self, id=0, timeout=5000):
                if not 1 <= timeout <= 0x7FFFFFFF:
                    raise ValueError("timeout out of range")
                self.timeout_ms = timeout
                self._fed = time.monotonic()
                self._stopped = threading.Event()
                board.watchdog = self
                threading.Thread(target=self._watch, name="sim-wdt", daemon=True).start()

            def feed(self):
                self._fed = time.monotonic()

            def _watch(self):
                tick = min(self.timeout_ms / 4000, 0.05)
                while not self._stopped.wait(tick):
                    if (time.monotonic() - self._fed) * 1000 >= self.timeout_ms:
                        self._stopped.set()
                        board.reset(board.WDT_RESET)
                        return

            def stop(self):
                """Simulation only (a real WDT cannot be stopped): power off."""
                self._stopped.set()

        self.WDT = WDT
        self.rtc_datetime = None  # the last tuple written to machine.RTC().datetime()

        class RTC:
            """machine.RTC(): datetime((year, month, day, weekday, hours,
            minutes, seconds, subseconds)) sets the board's clock, datetime()
            reads what was set. The simulated board's time.time() is the host's
            and does not follow it; device.ntp.WallClock keeps the difference."""

            def datetime(self, value=None):
                if value is None:
                    return board.rtc_datetime
                if not isinstance(value, tuple) or len(value) != 8:
                    raise ValueError("datetime: an 8-tuple")
                board.rtc_datetime = value
                return None

        self.RTC = RTC

    def reset(self, cause: int = HARD_RESET) -> None:
        """The board resets: the watchdog stops, the next boot reads `cause`."""
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None
        self._reset_cause = cause
        self.resets += 1
        for callback in list(self.on_reset):
            callback(cause)

    def power_off(self) -> None:
        """Stop the watchdog without a reset (the end of a simulation)."""
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None

    def reset_cause(self) -> int:
        return self._reset_cause

    def unique_id(self) -> bytes:
        return self._unique_id
