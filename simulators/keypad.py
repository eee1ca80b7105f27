"""For tests and the demo only: a window keypad simulated on CPython.

It runs the firmware of device/ itself (device.main.build) with SimMachine and
SimNetwork standing in for the board, a real data folder for the journal and
real sockets to the broker. Key presses drive the simulated pins, so they go
through the same debouncing as on the board.

The loop is the firmware's own (Device.run_once): an exception in a pass is
caught and counted as on a board, and also kept in `errors` so a test sees
it. With watchdog=True the board's watchdog runs (SimMachine.WDT): a loop
that stops feeding it resets the board, and the firmware boots again from
the same data folder (`boots` counts the boots).

With display=True (or a SimDisplay) the firmware draws its screen with the
font file `font_file` (tools/fontgen.py); frames_dir saves every changed
frame as a PNG. With uart (a simulators.uart.PtyUART, say) the keypad is
wired to a window PC on that UART (settings window_uart).
"""

from __future__ import annotations

import sys
import threading
import time

import device as device_package
from device import config as device_config
from device import update as device_update
from device.compat import ticks_ms
from device.main import build, start_watchdog
from device.store import seed
from device.update import boot_line
from hardware.boards import sim as sim_board
from protocols import levels
from simulators.display import SimDisplay
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
        watchdog: bool = False,
        provisioned: bool = True,
        display=None,
        frames_dir=None,
        font_file=None,
        uart=None,
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
        if uart is not None:
            overrides["window_uart"] = 1
        overrides.update(settings)
        self.settings = device_config.load(None, overrides)
        if display is True or (display is None and frames_dir):
            display = SimDisplay(sim_board.DISPLAY_WIDTH, sim_board.DISPLAY_HEIGHT, frames_dir)
        if display is not None and not font_file:
            raise ValueError("a display needs font_file: build one with `hcp font build`")
        self.display = display or None  # the simulated panel (SimDisplay), if any
        self.font_file = font_file
        self.uart = uart
        if provisioned:
            # as provisioning leaves a new board: its seqs start at 1. Without it
            # the board is a wiped one that asks the collector (down/seq).
            seed(data_dir)
        # A board whose clock was never set counts from its epoch (2000-01-01).
        self._booted = time.monotonic()
        self.wall_clock = None if clock_set else self._unset_clock
        self.machine = SimMachine()
        self.network = SimNetwork()
        self.watchdog = watchdog
        self.machine.on_reset.append(self._reboot)
        if uart is not None:
            self.machine.UART = lambda *args, **kwargs: uart  # the board's UART to the window PC
        self.device = None
        self.boots = 0
        self.boot_line = None  # the console's first line of the last boot
        self.presses = 0
        self.errors: list[BaseException] = []
        self._thread = None
        self._boot = None  # a token per boot: the loop of an earlier boot stops
        self._running = threading.Event()
        self._lock = threading.Lock()  # the device is touched by its loop thread only

    def start(self) -> SimKeypad:
        """Boot the firmware and run its main loop in a thread."""
        self._running.set()
        self._start_boot()
        return self

    def _start_boot(self):
        # the filesystem check is skipped explicitly: the data folder is on the host's disk
        device = build(
            self.machine,
            self.network,
            sim_board,
            self.settings,
            wall_clock=self.wall_clock,
            check_filesystem=False,
            display=self.display,
            font_file=self.font_file,
        )
        # as device/main.py: the firmware really running becomes the status's,
        # a rollback is noted with its reason (device/update.py boot_line)
        self.boot_line = boot_line(device)
        # boot_line drops device.update to free a board's heap; in this process
        # the module stays, so tests that patch it keep patching the one in use
        sys.modules.setdefault("device.update", device_update)
        device_package.update = device_update
        self._crashes = device.crash_log.count  # crashes noted from here on are errors
        if device.mode == "failed":
            self.errors.append(RuntimeError(device.crash_log.last_error))
        if self.watchdog:
            start_watchdog(device, self.machine)
        boot = object()
        self._lock = threading.Lock()  # a stuck earlier boot may still hold its own
        self.device = device
        self._boot = boot
        self.boots += 1
        self._thread = threading.Thread(
            target=self._loop, args=(boot,), name=self.settings["device_id"], daemon=True
        )
        self._thread.start()

    def _reboot(self, cause):
        """The board reset (its watchdog): the running firmware is gone - its
        loop never steps again, its socket drops as in a power cut - and it
        boots again from flash."""
        self._boot = None
        old = self.device
        if old is not None and old.client is not None:
            old.client.close()
        if self._running.is_set():
            self._start_boot()

    def hold_key_at_boot(self, index: int) -> None:
        """Press key `index` before start() (and keep it pressed): key 0 held
        for safe_mode_hold_ms starts safe mode. release_key() lets it go."""
        pin = self.machine.Pin(sim_board.KEY_PINS[index], self.machine.Pin.IN, 1)
        pin.drive(0)

    def release_key(self, index: int) -> None:
        self.machine.pins[sim_board.KEY_PINS[index]].drive(1)

    def _unset_clock(self):
        return 946684800 + int(time.monotonic() - self._booted), "unset"

    def _loop(self, boot):
        lock, device = self._lock, self.device
        while self._running.is_set() and self._boot is boot:
            with lock:
                pause = device.run_once(ticks_ms())
            count = device.crash_log.count
            if count != self._crashes:  # a firmware crash must fail the test, not vanish
                self._crashes = count
                self.errors.append(RuntimeError(device.crash_log.last_error))
            time.sleep(pause / 1000)  # LOOP_MS between passes, as on a board

    def stop(self, power_cut: bool = False) -> None:
        """Stop the loop: an orderly shutdown, or a power cut (no goodbye to the broker)."""
        self._running.clear()
        self.machine.power_off()
        if self._thread:
            self._thread.join(10)
        if self.device and self.device.client is not None:
            if power_cut:
                self.device.client.close()
            else:
                self.device.shutdown()

    def call(self, fn):
        """Run fn(device) between two loop passes (for inspection from tests)."""
        with self._lock:
            return fn(self.device)

    def press_key(self, index: int) -> None:
        """A finger holds the key until the keypad has felt it (its debounced
        state), then lets go until it has felt that too: on a loaded machine
        the keypad's loop may run less often than the debounce time, and a
        press shorter than that would be lost (as a too-short tap is on a board)."""
        pin = self.machine.pins[sim_board.KEY_PINS[index]]
        pin.drive(0)  # active-low: pressed reads 0
        self._until_felt(index, True)
        pin.drive(1)
        self._until_felt(index, False)

    def _until_felt(self, index: int, down: bool, limit_s: float = 5.0) -> None:
        time.sleep(HOLD_S)
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline and self._running.is_set():
            device = self.device
            if device is None or device.keys.down(index) == down:
                return
            time.sleep(0.005)

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
