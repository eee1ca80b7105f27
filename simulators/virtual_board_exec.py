# For tests and demos only: the MicroPython half of simulators/virtual_board.py.
# It runs under MicroPython's unix port:
#
#   micropython32 virtual_board_exec.py ROOT STANDINS TOKEN BOOT [CAUSE]
#
# ROOT is the board's file system (a folder on the host): it is mounted at
# "/" (vfs.VfsPosix), so "/data/config.json" is ROOT/data/config.json, and
# sys.path is the board's ['', '.frozen', '/lib'] ("lib": see below). STANDINS is the folder of
# the stand-ins for `machine` and `network` (tests/harness/mp_unix_board/),
# imported before the mount, with machine.reset()/soft_reset() added. BOOT
# "1" runs /boot.py and /main.py first, as a board does after power-on.
# CAUSE (machine.WDT_RESET after a watchdog reset) is what
# machine.reset_cause() says on this boot; power-on when absent.
#
# Programs come on stdin, each as a 4-byte big-endian length, a mode byte
# (b"e": exec, b"s": one line of the friendly REPL, whose expression values
# are printed) and the source. They run in one namespace, kept until the
# process ends (a soft reset restarts the process). Their output goes to
# stdout as it is made; after each program the executor writes TOKEN, a
# status byte (b"0": done, b"R": machine.reset(), b"W": the watchdog reset
# the board, b"S": soft reset), the
# length of the error text in decimal, b"\n" and the error text (a traceback,
# as the raw REPL shows it).
import io
import sys
import time

ROOT, STANDINS, TOKEN, BOOT = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
CAUSE = sys.argv[5] if len(sys.argv) > 5 else ""  # machine.reset_cause() of this boot
TOKEN = TOKEN.encode()
EXECUTOR_NAME = "virtual_board_exec.py"

sys.path[:] = [STANDINS]
import os  # noqa: E402

import machine  # noqa: E402  (the stand-ins)
import network  # noqa: E402,F401
import vfs  # noqa: E402


class HardReset(BaseException):
    pass


class WatchdogReset(HardReset):
    pass


class SoftReset(BaseException):
    pass


def _reset():
    raise HardReset()


def _soft_reset():
    raise SoftReset()


machine.reset = _reset
machine.soft_reset = _soft_reset
if CAUSE:
    machine.set_reset_cause(int(CAUSE))


class WDT:
    """machine.WDT that resets the board when it is fed later than `timeout`
    ms after the last feed (or its start). The unix port has no timer to
    interrupt a program, so the reset comes at that late feed, as if the
    timer had fired: the board restarts with reset_cause() WDT_RESET. Not
    fed at all after a hang, it never fires (a test sees the hang instead)."""

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0
        self._fed = time.ticks_ms()

    def feed(self):
        now = time.ticks_ms()
        if time.ticks_diff(now, self._fed) > self.timeout:
            raise WatchdogReset()
        self._fed = now
        self.feeds += 1


machine.WDT = WDT


class BoardFS(vfs.VfsPosix):
    """The folder as a board's file system: ilistdir gives sizes too, as
    littlefs and FAT do (VfsPosix leaves them out)."""

    def ilistdir(self, path):
        for entry in super().ilistdir(path):
            size = 0
            if entry[1] == 0x8000:
                try:
                    size = self.stat(path.rstrip("/") + "/" + entry[0])[6]
                except OSError:
                    pass
            yield (entry[0], entry[1], 0, size)

    def rename(self, old, new):
        # VfsPosix with a root builds both host paths in one buffer (1.28), so
        # the old path is lost and rename fails with ENOENT: use a root-less one
        def host(path):
            if not path.startswith("/"):
                path = os.getcwd().rstrip("/") + "/" + path
            return ROOT.rstrip("/") + path

        HOST.rename(host(old), host(new))


HOST = vfs.VfsPosix()


vfs.umount("/")
vfs.mount(BoardFS(ROOT), "/")
os.chdir("/")
# the port reads modules through host paths (only stat goes through the VFS), so
# the board's "/lib" is given relative to the process's folder, which is ROOT
sys.path[:] = ["", ".frozen", "lib"]

out = sys.stdout.buffer
inp = sys.stdin.buffer
namespace = {"__name__": "__main__"}


def read_exactly(n):
    data = b""
    while len(data) < n:
        try:
            chunk = inp.read(n - len(data))
        except KeyboardInterrupt:
            continue  # a Ctrl-C that came as the last program ended
        if not chunk:
            return None
        data += chunk
    return data


def finish(status, error):
    data = TOKEN + status + str(len(error)).encode() + b"\n" + error
    while True:
        try:
            out.write(data)
            return
        except KeyboardInterrupt:
            continue


def run(source, mode, filename="<stdin>"):
    """Run one program; returns (status byte, error text)."""
    try:
        code = compile(source, filename, mode)
        exec(code, namespace)
    except WatchdogReset:
        return b"W", b""
    except HardReset:
        return b"R", b""
    except SoftReset:
        return b"S", b""
    except SystemExit:
        return b"S", b""
    except BaseException as exc:  # noqa: B036 (KeyboardInterrupt is reported too)
        text = io.StringIO()
        sys.print_exception(exc, text)
        # the executor's own frame is not the board's: leave it out
        lines = [line for line in text.getvalue().split("\n") if EXECUTOR_NAME not in line]
        return b"0", "\n".join(lines).encode()
    return b"0", b""


def boot():
    for name in ("boot.py", "main.py"):
        try:
            with open(name) as f:
                source = f.read()
        except OSError:
            continue
        status, error = run(source, "exec", name)
        if status != b"0" or error:
            return status, error
    return b"0", b""


if BOOT == "1":
    status, error = boot()
    finish(status, error)

while True:
    header = read_exactly(5)
    if header is None:
        break
    length = int.from_bytes(header[:4], "big")
    mode = "single" if header[4:5] == b"s" else "exec"
    source = read_exactly(length)
    if source is None:
        break
    status, error = run(source, mode)
    finish(status, error)
