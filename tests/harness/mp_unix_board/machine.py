# For tests only: a stand-in for MicroPython's `machine` module on the unix
# port, which has none. It runs under MicroPython (and CPython). The firmware
# calls it as it calls the real module: machine.Pin(n, machine.Pin.IN,
# machine.Pin.PULL_UP), then pin() to read a level; the test script sets the
# level a key press makes with pin(n).drive(0).

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_pins = {}  # pin number -> the Pin the firmware made for it
_reset_cause = PWRON_RESET


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, pin_id, mode=-1, pull=-1, value=None):
        self.id = pin_id
        self.mode = mode
        # an input with a pull-up floats high: a released key reads 1
        self._level = 1 if pull == Pin.PULL_UP else 0
        if value is not None:
            self._level = 1 if value else 0
        _pins[pin_id] = self

    def drive(self, level):
        """Set the electrical level seen on the pin (what a key press does)."""
        self._level = 1 if level else 0

    def value(self, level=None):
        if level is None:
            return self._level
        self.drive(level)
        return None

    def __call__(self, level=None):
        return self.value(level)

    def on(self):
        self.drive(1)

    def off(self):
        self.drive(0)


def pin(pin_id):
    """The Pin the firmware made for pin_id (KeyError if it made none)."""
    return _pins[pin_id]


class WDT:
    """A watchdog that counts its feeds; it never resets the process."""

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0

    def feed(self):
        self.feeds += 1


def reset_cause():
    return _reset_cause


def set_reset_cause(cause):
    global _reset_cause
    _reset_cause = cause


def unique_id():
    return b"\x00\x01\x02\x03\x04\x05"
