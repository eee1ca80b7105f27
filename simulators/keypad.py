"""For tests and the demo only: a window keypad simulated on CPython.

It runs the firmware of device/ itself (device.main.build) with SimMachine and
SimNetwork standing in for the board, a real data folder for the journal and
real sockets to the broker. Key presses drive the simulated pins, so they go
through the same debouncing as on the board.
"""

from __future__ import annotations

import threading
import time

from device import config as device_config
from device.compat import ticks_ms
from device.main import build
from hardware.boards import sim as sim_board
from protocols import levels
from simulators.machine import SimMachine
from simulators.network import SimNetwork

HOLD_S = 0.06  # how long a simulated finger holds a key (debounce is 30 ms)


class SimKeypad:
    def __init__(
        self,
        device_id: str,
        key_hex: str,
        broker_host: str,
        broker_port: int,
        data_dir: str,
        clock_set: bool = True,
        **settings,
    ):
        overrides = {
            "device_id": device_id,
            "key": key_hex,
            "broker_host": broker_host,
            "broker_port": broker_port,
            "data_dir": data_dir,
            "board": "sim",
            "confirm_ms": 300,  # short, so end-to-end tests stay fast
            "timeout_ms": 3000,
        }
        overrides.update(settings)
        self.settings = device_config.load(None, overrides)
        # A board whose clock was never set counts from its epoch (2000-01-01).
        self._booted = time.monotonic()
        self.wall_clock = None if clock_set else self._unset_clock
        self.machine = SimMachine()
        self.network = SimNetwork()
        self.device = None
        self.presses = 0
        self.errors: list[BaseException] = []
        self._thread = None
        self._running = threading.Event()
        self._lock = threading.Lock()  # the device is touched by its loop thread only

    def start(self) -> SimKeypad:
        """Boot the firmware and run its main loop in a thread."""
        self.device = build(
            self.machine, self.network, sim_board, self.settings, wall_clock=self.wall_clock
        )
        self._running.set()
        self._thread = threading.Thread(
            target=self._loop, name=self.settings["device_id"], daemon=True
        )
        self._thread.start()
        return self

    def _unset_clock(self):
        return 946684800 + int(time.monotonic() - self._booted), "unset"

    def _loop(self):
        while self._running.is_set():
            try:
                with self._lock:
                    self.device.step(ticks_ms())
            except Exception as exc:  # a firmware crash must fail the test, not vanish
                self.errors.append(exc)
                raise
            time.sleep(0.005)

    def stop(self, power_cut: bool = False) -> None:
        """Stop the loop: an orderly shutdown, or a power cut (no goodbye to the broker)."""
        self._running.clear()
        if self._thread:
            self._thread.join(10)
        if self.device:
            if power_cut:
                self.device.client.close()
            else:
                self.device.shutdown()

    def call(self, fn):
        """Run fn(device) between two loop passes (for inspection from tests)."""
        with self._lock:
            return fn(self.device)

    def press_key(self, index: int) -> None:
        pin = self.machine.pins[sim_board.KEY_PINS[index]]
        pin.drive(0)  # active-low: pressed reads 0
        time.sleep(HOLD_S)
        pin.drive(1)
        time.sleep(HOLD_S)

    def state(self) -> str:
        return self.call(lambda d: d.app.state)

    def rate(self, stars: int, reason_index: int | None = None) -> None:
        """A citizen presses the key for `stars` (5 = 非常满意), picks tag number
        `reason_index` if the keypad shows tags for that level (and there is
        still time to press it), and waits until the follow-up window is over
        and the keypad is ready for the next citizen."""
        self.press_key(levels.KEY_STARS.index(stars))
        self.presses += 1
        if reason_index is not None:
            left = self.call(lambda d: d.app.tags_left_ms(ticks_ms()))
            # a press counts after the debounce; one that came too late would
            # land after the window and rate again
            if left > 2 * HOLD_S * 1000:
                self.press_key(reason_index)
        deadline = time.monotonic() + self.settings["confirm_ms"] / 1000 + 5
        while time.monotonic() < deadline:
            if not self.call(lambda d: d.app.in_window()):
                return
            time.sleep(0.01)
        raise TimeoutError(f"{self.settings['device_id']}: keypad did not return to idle")

    def pending(self) -> int:
        return self.call(lambda d: len(d.store))

    def wait_drained(self, timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending() == 0:
                return True
            time.sleep(0.02)
        return False
