"""For tests and the demo only: a stand-in for MicroPython's `machine` module.

Each SimMachine is one board's worth of hardware, so several simulated
devices can live in one process. The firmware calls it exactly as it calls
the real module (machine.Pin(n, machine.Pin.IN, machine.Pin.PULL_UP), pin());
the simulator drives pin levels with SimPin.drive().
"""

from __future__ import annotations

import threading


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

    def reset_cause(self) -> int:
        return self._reset_cause

    def unique_id(self) -> bytes:
        return self._unique_id
