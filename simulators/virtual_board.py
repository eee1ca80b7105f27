"""A virtual MicroPython board: the unix port behind a pseudo-terminal that
speaks MicroPython's REPL, so `mpremote connect /dev/pts/N ...` and
`hcp provision --port /dev/pts/N` work against it unchanged.

    board = VirtualBoard(root="board-fs", binary=micropython32_path())
    board.start()
    print(board.port)          # /dev/pts/N
    ...
    board.stop()

The board's file system is the folder `root`: the MicroPython process runs
in it with that folder mounted at "/" (simulators/virtual_board_exec.py), so
files written survive a soft reset, `machine.reset()` and a new VirtualBoard
on the same folder. `machine` and `network` are the stand-ins of
tests/harness/mp_unix_board/ (the unix port has neither), with
`machine.reset()` added.

The unix port's own REPL has no raw mode, so a thread here owns the pty's
master side and plays the board's REPL:

* friendly REPL (">>> "): a line typed is run (expression values printed);
  Ctrl-A enters the raw REPL, Ctrl-B prints the banner, Ctrl-C interrupts
  a running program (SIGINT to the process, which raises KeyboardInterrupt),
  Ctrl-D soft-resets: a new process, which runs /boot.py and /main.py;
* raw REPL ("raw REPL; CTRL-B to exit\\r\\n>"): the program is collected up
  to Ctrl-D, answered "OK", run, and framed as output, \\x04, error text,
  \\x04, ">"; Ctrl-D on an empty program soft-resets (without main.py, as a
  board does in raw mode), Ctrl-B goes back to the friendly REPL;
* raw-paste mode (Ctrl-E "A" Ctrl-A: "R\\x01", a 2-byte window and \\x01
  for each window consumed), which mpremote uses when the board offers it.

While a program runs, bytes other than Ctrl-C wait until it ends, as in a
board's input buffer. Output written while nobody has the port open is
dropped after a short wait, as a USB serial port with no host drops it.
`machine.reset()` restarts the process with boot (main.py runs). Its
`machine.WDT` resets the board the same way when it is fed later than its
timeout (at that late feed: the unix port has no timer), and the next boot's
`machine.reset_cause()` says WDT_RESET.
"""

from __future__ import annotations

import errno
import os
import pty
import secrets
import select
import signal
import subprocess
import threading
import time
import tty
from pathlib import Path

EXECUTOR = Path(__file__).with_name("virtual_board_exec.py")
ROOT = Path(__file__).resolve().parents[1]
STANDINS = ROOT / "tests" / "harness" / "mp_unix_board"
BANNER = b"MicroPython v1.28.0 on virtual-board; linux (hcp virtual board)\r\n"
HELP_LINE = b'Type "help()" for more information.\r\n'
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
PASTE_WINDOW = 256
WRITE_WAIT_S = 2.0  # how long output waits for a reader before it is dropped

CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E = 1, 2, 3, 4, 5

FRIENDLY, RAW, PASTE = "friendly", "raw", "paste"
WDT_RESET = 3  # machine.WDT_RESET: what reset_cause() says after the watchdog


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the process that started it ends
    (Linux), so a board whose owner was killed leaves no MicroPython behind."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class VirtualBoard:
    def __init__(
        self,
        root,
        binary,
        heapsize: str | None = None,
        standins=STANDINS,
        boot: bool = True,
        log=None,
    ):
        self.root = Path(root).resolve()
        self.binary = str(binary)
        self.heapsize = heapsize
        self.standins = Path(standins).resolve()
        self.boot_on_start = boot
        self.log = log  # a file for everything the board writes (debugging), or None
        self.port: str | None = None
        self.resets = 0  # process starts after the first
        self.watchdog_resets = 0  # resets by the watchdog (machine.WDT fed too late)
        self._cause = None  # reset_cause() of the last hard reset (None: power-on)
        self.programs = 0  # programs run (raw REPL and friendly lines)
        self._master = self._slave = None
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._token = b""
        self._out = bytearray()  # process output not yet forwarded
        self._pending = bytearray()  # input waiting while a program runs
        self._mode = FRIENDLY
        self._line = bytearray()
        self._busy = False
        self._booting = False
        self._paste_count = 0
        self._lock = threading.Lock()

    # --- life cycle ---

    def start(self) -> VirtualBoard:
        self.root.mkdir(parents=True, exist_ok=True)
        self._master, self._slave = pty.openpty()
        tty.setraw(self._slave)  # no echo, no line editing: bytes pass as they are
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._spawn(boot=self.boot_on_start)
        self._thread = threading.Thread(target=self._serve, name="virtual-board", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self._kill()
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def pid(self) -> int | None:
        """The MicroPython process's pid (a new one after each reset)."""
        return self._proc.pid if self._proc else None

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no program runs (boot finished); True if so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._busy:
                return True
            time.sleep(0.02)
        return False

    # --- the MicroPython process ---

    def _spawn(self, boot: bool, cause: int | None = None) -> None:
        self._token = b"\x1e\x1fVB" + secrets.token_hex(8).encode() + b"\x1f"
        args = [self.binary]
        if self.heapsize:
            args += ["-X", f"heapsize={self.heapsize}"]
        args += [
            str(EXECUTOR),
            str(self.root),
            str(self.standins),
            self._token.decode(),
            "1" if boot else "0",
        ]
        if cause is not None:
            args.append(str(cause))
        self._proc = subprocess.Popen(
            args,
            cwd=self.root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            bufsize=0,
            preexec_fn=_die_with_parent,
        )
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._out.clear()
        self._busy = boot  # boot.py/main.py run first and end with a status
        self._booting = boot

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        proc.stdout.close()

    def _restart(self, boot: bool, cause: int | None = None) -> None:
        self._kill()
        self.resets += 1
        self._spawn(boot, cause)

    def _send_program(self, source: bytes, mode: bytes) -> None:
        self._busy = True
        self.programs += 1
        try:
            self._proc.stdin.write(len(source).to_bytes(4, "big") + mode + source)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the process died: its end is seen on stdout

    # --- the pty ---

    def _write(self, data: bytes) -> None:
        if self.log is not None:
            self.log.write(data)
            self.log.flush()
        deadline = time.monotonic() + WRITE_WAIT_S
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._master, view)
                view = view[n:]
            except BlockingIOError:
                if time.monotonic() > deadline or self._stop.is_set():
                    return  # nobody reads: dropped
                select.select([], [self._master], [], 0.05)
            except OSError:
                return

    def _serve(self) -> None:
        while not self._stop.is_set():
            proc = self._proc
            fds = [self._master]
            if proc is not None:
                fds.append(proc.stdout.fileno())
            try:
                readable, _, _ = select.select(fds, [], [], 0.1)
            except (OSError, ValueError):
                continue
            if self._master in readable:
                try:
                    data = os.read(self._master, 4096)
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EIO):
                        raise
                    data = b""
                for byte in data:
                    if self._busy and byte == CTRL_C:
                        self._interrupt()
                    else:
                        self._pending.append(byte)
            if proc is not None and proc.stdout.fileno() in readable:
                self._read_process(proc)
            if not self._busy and self._pending:
                self._process_input()

    def _interrupt(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)

    def _read_process(self, proc) -> None:
        try:
            data = proc.stdout.read(65536)
        except BlockingIOError:
            return
        if data is None:
            return
        if not data:  # the process ended without its status (it crashed)
            self._flush_output(final=True)
            self._finished(b"S", b"the board's process ended\r\n")
            return
        self._out += data
        self._flush_output()

    def _flush_output(self, final: bool = False) -> None:
        """Forward process output up to the token; handle a complete status."""
        while True:
            at = self._out.find(self._token)
            if at < 0:
                keep = 0 if final else self._token_prefix_tail()
                cut = len(self._out) - keep
                if cut:
                    self._emit(bytes(self._out[:cut]))
                    del self._out[:cut]
                return
            if at:
                self._emit(bytes(self._out[:at]))
                del self._out[:at]
            rest = self._out[len(self._token) :]
            newline = rest.find(b"\n")
            if newline < 0:
                return  # the status line is not all here yet
            status = bytes(rest[:1])
            length = int(bytes(rest[1:newline]))
            if len(rest) < newline + 1 + length:
                return
            error = bytes(rest[newline + 1 : newline + 1 + length])
            del self._out[: len(self._token) + newline + 1 + length]
            self._finished(status, error)

    def _token_prefix_tail(self) -> int:
        """Length of the longest end of the output that could start the token."""
        for n in range(min(len(self._token) - 1, len(self._out)), 0, -1):
            if self._out.endswith(self._token[:n]):
                return n
        return 0

    def _emit(self, data: bytes) -> None:
        if self._mode == FRIENDLY:
            data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        self._write(data)

    def _finished(self, status: bytes, error: bytes) -> None:
        """A program (or the boot) ended with `status` and `error` text."""
        if self._mode == FRIENDLY:
            if error:
                self._write(error.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        else:
            self._write(b"\x04" + error + b"\x04")
        self._busy = False
        booted, self._booting = self._booting, False
        if status in (b"R", b"W"):  # machine.reset() or the watchdog: a hard reset, boot
            self._mode = FRIENDLY
            self._write(b"\r\n")
            if status == b"W":
                self.watchdog_resets += 1
            self._cause = WDT_RESET if status == b"W" else None
            self._restart(boot=True, cause=self._cause)
            return
        if status == b"S":  # sys.exit() or machine.soft_reset(), or the process died
            self._soft_reset()
            return
        if booted and self._mode == FRIENDLY:
            self._banner()  # after main.py, as a board does
            return
        self._prompt()

    def _prompt(self) -> None:
        if self._mode == FRIENDLY:
            self._write(b">>> ")
        else:
            self._write(b">")

    def _soft_reset(self) -> None:
        self._write(b"MPY: soft reboot\r\n")
        boot = self._mode == FRIENDLY  # in raw mode a board skips main.py
        self._restart(boot=boot, cause=self._cause)  # a soft reset keeps the chip's cause
        if not boot:
            self._write(RAW_BANNER + b">")
        # friendly: boot runs; _finished then prints the prompt

    def _banner(self) -> None:
        self._write(BANNER + HELP_LINE + b">>> ")

    # --- the REPL state machine ---

    def _process_input(self) -> None:
        while self._pending and not self._busy:
            byte = self._pending.pop(0)
            if self._mode == FRIENDLY:
                self._friendly(byte)
            elif self._mode == RAW:
                self._raw(byte)
            else:
                self._paste(byte)

    def _friendly(self, byte: int) -> None:
        if byte == CTRL_A:
            self._mode = RAW
            self._line.clear()
            self._write(b"\r\n" + RAW_BANNER + b">")
        elif byte == CTRL_B:
            self._line.clear()
            self._write(b"\r\n")
            self._banner()
        elif byte == CTRL_C:
            self._line.clear()
            self._write(b"\r\n>>> ")
        elif byte == CTRL_D:
            if self._line:
                return
            self._write(b"\r\n")
            self._soft_reset()
        elif byte in (8, 127):  # backspace
            if self._line:
                self._line.pop()
                self._write(b"\x08 \x08")
        elif byte == 13:  # Enter
            self._write(b"\r\n")
            line = bytes(self._line)
            self._line.clear()
            if line.strip():
                self._send_program(line, b"s")
            else:
                self._write(b">>> ")
        elif byte == 10:
            pass
        else:
            self._line.append(byte)
            self._write(bytes([byte]))

    def _raw(self, byte: int) -> None:
        line = self._line
        if byte == CTRL_A and bytes(line) == b"\x05A":  # raw-paste mode asked for: offered
            line.clear()
            self._mode = PASTE
            self._paste_count = 0
            self._write(b"R\x01" + PASTE_WINDOW.to_bytes(2, "little"))
        elif byte == CTRL_A:  # raw REPL again
            line.clear()
            self._write(b"\r\n" + RAW_BANNER + b">")
        elif byte == CTRL_B:  # back to the friendly REPL
            line.clear()
            self._mode = FRIENDLY
            self._write(b"\r\n")
            self._banner()
        elif byte == CTRL_C:
            line.clear()
        elif byte == CTRL_D:
            if not line:
                self._write(b"OK\r\n")
                self._soft_reset()
                return
            source = bytes(line)
            line.clear()
            self._write(b"OK")
            self._send_program(source, b"e")
        else:
            line.append(byte)

    def _paste(self, byte: int) -> None:
        if byte == CTRL_D:  # end of the program
            source = bytes(self._line)
            self._line.clear()
            self._mode = RAW
            self._write(b"\x04")
            self._send_program(source, b"e")
            return
        self._line.append(byte)
        self._paste_count += 1
        if self._paste_count >= PASTE_WINDOW:
            self._paste_count -= PASTE_WINDOW
            self._write(b"\x01")  # room for another window


def main(argv=None) -> int:
    """Run a virtual board until Ctrl-C: prints its port.

    .venv/bin/python -m simulators.virtual_board --root board-fs
    """
    import argparse

    parser = argparse.ArgumentParser(description="a virtual MicroPython board on a pty")
    parser.add_argument("--root", required=True, help="folder holding the board's file system")
    parser.add_argument("--micropython", help="the unix port's binary (default: the harness's)")
    parser.add_argument("--heapsize", help="e.g. 256K (default: the port's)")
    args = parser.parse_args(argv)
    binary = args.micropython
    if not binary:
        from tests.harness.micropython_unix import micropython32_path

        binary = micropython32_path()

    def stop_on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_term)  # `kill` stops it as Ctrl-C does
    board = VirtualBoard(args.root, binary, heapsize=args.heapsize).start()
    print(f"virtual board on {board.port} (file system {board.root}); Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
