"""The virtual board (simulators/virtual_board.py) with the real mpremote:
what a technician types works against it unchanged, and files survive a
reset and a new board process on the same folder."""

from __future__ import annotations

import time

from tests.harness.virtual_board import mpremote


def test_exec_prints_and_errors_come_back_as_on_a_board(virtual_board):
    run = mpremote(virtual_board.port, "exec", "print(1+1)")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "2"
    run = mpremote(virtual_board.port, "exec", "1/0")
    assert run.returncode == 1
    assert run.stdout.strip().splitlines() == [
        "Traceback (most recent call last):",
        '  File "<stdin>", line 1, in <module>',
        "ZeroDivisionError: divide by zero",
    ]


def test_fs_cp_ls_cat_and_a_file_surviving_reset(virtual_board, tmp_path):
    local = tmp_path / "config.json"
    local.write_text('{"device_id": "kp-x"}\n')
    run = mpremote(
        virtual_board.port,
        "fs",
        "mkdir",
        ":/data",
        "+",
        "fs",
        "cp",
        str(local),
        ":/data/config.json",
        "+",
        "fs",
        "ls",
        ":/data",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1].split() == [str(len(local.read_bytes())), "config.json"]
    # the board's file system is the folder on disk
    assert (virtual_board.root / "data" / "config.json").read_text() == local.read_text()
    pid = virtual_board.pid
    run = mpremote(virtual_board.port, "reset")
    assert run.returncode == 0, run.stderr
    deadline = time.monotonic() + 5
    while virtual_board.pid == pid and time.monotonic() < deadline:
        time.sleep(0.05)
    assert virtual_board.pid != pid, "machine.reset() did not restart the board"
    run = mpremote(virtual_board.port, "fs", "cat", ":/data/config.json")
    assert run.returncode == 0, run.stderr
    assert run.stdout == local.read_text()


def test_namespace_lasts_until_soft_reset(virtual_board):
    # one mpremote session: exec keeps globals (as mpremote's fs commands need)
    run = mpremote(virtual_board.port, "exec", "x = 41", "+", "exec", "print(x + 1)")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "42"
    # a new session soft-resets first: the namespace is gone
    run = mpremote(virtual_board.port, "exec", "print('x' in globals())")
    assert run.stdout.strip() == "False"


def test_main_py_runs_at_boot_and_ctrl_c_gives_the_repl_back(micropython32, tmp_path):
    root = tmp_path / "fs"
    root.mkdir()
    (root / "main.py").write_text(
        "import time\nwith open('booted', 'a') as f:\n    f.write('x')\n"
        "while True:\n    time.sleep_ms(10)\n"
    )
    from simulators.virtual_board import VirtualBoard

    board = VirtualBoard(root, micropython32).start()
    try:
        deadline = time.monotonic() + 5
        while not (root / "booted").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (root / "booted").read_text() == "x"
        assert not board.wait_idle(0.3), "main.py's loop should still run"
        # mpremote interrupts the running main.py (Ctrl-C) and gets its raw REPL
        run = mpremote(board.port, "exec", "print(open('booted').read())")
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "x"
        # a soft reset in the raw REPL does not run main.py (as on a board)
        assert (root / "booted").read_text() == "x"
    finally:
        board.stop()
    # a new board process on the same folder: power-on runs main.py again
    board = VirtualBoard(root, micropython32).start()
    try:
        deadline = time.monotonic() + 5
        while (root / "booted").read_text() != "xx" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (root / "booted").read_text() == "xx"
    finally:
        board.stop()


def test_friendly_repl_line_and_raw_paste_of_a_large_file(virtual_board, tmp_path):
    import serial

    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 200)  # 51,200 bytes: many raw-paste windows
    run = mpremote(virtual_board.port, "fs", "cp", str(big), ":big.bin")
    assert run.returncode == 0, run.stderr
    assert (virtual_board.root / "big.bin").read_bytes() == big.read_bytes()
    with serial.Serial(virtual_board.port, 115200, timeout=0.2) as port:
        port.write(b"\x02")  # friendly REPL, banner
        port.write(b"6*7\r")
        seen = b""
        deadline = time.monotonic() + 5
        while b"42\r\n>>> " not in seen and time.monotonic() < deadline:
            seen += port.read(256)
    assert b"42\r\n>>> " in seen, seen


def test_hcp_sim_board_serves_a_board_that_mpremote_uses_and_stops_on_ctrl_c(tmp_path):
    """`hcp sim board` as a new user runs it: it prints the port, real mpremote
    runs a program there and writes a file into its folder, Ctrl-C stops it."""
    import signal
    import subprocess
    import sys

    from tests.harness.micropython_unix import require_micropython32

    require_micropython32()
    folder = tmp_path / "board-fs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hcp", "sim", "board", "--folder", str(folder),
         "--duration", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        port = next(line.split(": ", 1)[1].strip() for line in lines if "serial port:" in line)
        assert "空板，等待 REPL / empty board at its REPL\n" in [line.lstrip() for line in lines]
        ran = mpremote(port, "exec", "print(6 * 7)")
        assert ran.returncode == 0 and ran.stdout.strip() == "42", ran.stdout + ran.stderr
        wrote = mpremote(port, "exec", "open('/hello.txt', 'w').write('你好')")
        assert wrote.returncode == 0, wrote.stdout + wrote.stderr
        assert (folder / "hello.txt").read_text() == "你好"
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=20)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "已停止 stopped" in rest
