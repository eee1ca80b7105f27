"""`hcp sim board`: a virtual keypad board on a pseudo-terminal, to try
`hcp provision` and `mpremote` without hardware.

    hcp sim board [--folder .hcp-board] [--heapsize 128K] [--duration S]

It is simulators/virtual_board.py (MicroPython's 32-bit unix port behind a
pseudo-terminal that speaks the raw REPL, with the stand-ins for `machine`
and `network` of tests/harness/mp_unix_board/), as the tests use it: the
board's file system is `--folder`, kept between runs, so a provisioned board
boots its firmware again at the next start. The unix port is built on first
use from ../shared/tools/micropython-unix/ (the brief's folder next to a
checkout of the project), so this command runs from a checkout only.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

NEEDS_CHECKOUT = (
    "hcp sim board runs from a checkout of the project: it needs tests/harness "
    "(the board's stand-ins) and ../shared/tools/micropython-unix (the port's build)"
)


def register(runs) -> None:
    """Add `board` to the runs of `hcp sim`."""
    p = runs.add_parser(
        "board", help="a virtual MicroPython board on a pseudo-terminal (for hcp provision)"
    )
    p.add_argument(
        "--folder", default=".hcp-board", help="the board's file system (default .hcp-board)"
    )
    p.add_argument("--heapsize", default=None, help="MicroPython's heap, e.g. 128K")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(handler=run)


def _binary() -> Path:
    """The 32-bit unix port, built first if needed; RuntimeError with the reason."""
    root = Path(__file__).resolve().parent.parent  # the checkout, where hcp is installed from
    if not (root / "tests" / "harness").is_dir():
        raise RuntimeError(NEEDS_CHECKOUT)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from tests.harness.micropython_unix import micropython32_path

    return micropython32_path()


def run(args) -> int:
    from simulators.virtual_board import VirtualBoard

    print("虚拟板 virtual board: preparing MicroPython's unix port …", flush=True)
    try:
        binary = _binary()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    board = VirtualBoard(folder, binary, heapsize=args.heapsize).start()
    try:
        # an empty board waits at its REPL; a provisioned one runs its firmware
        # (main.py) instead, which a connecting mpremote or hcp provision stops
        idle = board.wait_idle(5)
        print(f"  串口 serial port: {board.port}")
        print("  " + ("空板，等待 REPL / empty board at its REPL" if idle
                      else "正在运行固件 / running its firmware (main.py)"))  # fmt: skip
        print(f"  文件系统 file system: {board.root}")
        print(f"  试试 try: mpremote connect {board.port} fs ls :/")
        print(
            f"  配置 provision: hcp provision --port {board.port} --board sim "
            "--set ntp_host= --flash … (docs/technician-guide.md)"
        )
        print("  Ctrl-C 停止 / to stop", flush=True)
        stop.wait(args.duration)
    finally:
        board.stop()
    print("  已停止 stopped")
    return 0
