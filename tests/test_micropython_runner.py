"""The MicroPython runner itself: real interpreter, project packages, files, errors."""

import pytest

from tests.harness import micropython as harness
from tests.harness.micropython import run_micropython, run_micropython_many

pytestmark = pytest.mark.micropython


def test_prints_come_back_on_stdout():
    result = run_micropython("print(1 + 1)")
    result.check()
    assert result.stdout == "2\n"
    assert result.stderr == ""


def test_it_is_really_micropython(micropython):
    result = micropython("import sys\nprint(sys.implementation.name)")
    assert result.check().stdout == "micropython\n"


def test_an_exception_gives_returncode_1_and_the_traceback():
    result = run_micropython("print('before')\nraise ValueError('the message')")
    assert result.returncode == 1
    assert result.stdout == "before\n"
    assert "Traceback (most recent call last):" in result.stderr
    assert "ValueError: the message" in result.stderr
    with pytest.raises(AssertionError, match="the message"):
        result.check()


def test_sys_exit_sets_the_returncode():
    assert run_micropython("import sys\nsys.exit(0)").returncode == 0
    assert run_micropython("import sys\nsys.exit(3)").returncode == 3


def test_project_packages_are_importable():
    code = (
        "import protocols.canonical, device.compat, hardware.boards\n"
        "print(protocols.canonical.dumps({'b': 1, 'a': '中'}).decode())\n"
        "print(protocols.canonical.__file__)\n"
    )
    result = run_micropython(code).check()
    assert result.stdout.splitlines() == ['{"a":"中","b":1}', "/lib/protocols/canonical.py"]


def test_files_are_readable_from_the_working_directory():
    files = {"data/note.txt": "好差评\n", "blob.bin": bytes([0, 1, 255]), "/lib/extra.py": "X = 5"}
    code = (
        "import os, binascii, extra\n"
        "print(os.getcwd())\n"
        "print(open('data/note.txt').read().strip())\n"
        "print(binascii.hexlify(open('/work/blob.bin', 'rb').read()).decode(), extra.X)\n"
    )
    result = run_micropython(code, files).check()
    assert result.stdout.splitlines() == ["/work", "好差评", "0001ff 5"]


def test_many_snippets_run_in_fresh_interpreters():
    results = run_micropython_many(
        [
            "import protocols\nprotocols.marker = 1\nprint('a')",
            "import protocols\nprint(hasattr(protocols, 'marker'))",
        ]
        + [("print(open('f').read())", {"f": str(i)}) for i in range(3)]
        + ["raise KeyError('x')", "print('still running')"]
    )
    assert [r.stdout for r in results] == [
        "a\n",
        "False\n",
        "0\n",
        "1\n",
        "2\n",
        "",
        "still running\n",
    ]
    assert [r.returncode for r in results] == [0, 0, 0, 0, 0, 1, 0]


def test_a_hang_times_out_keeping_earlier_output():
    result = run_micropython("print('started')\nwhile True:\n    pass", timeout=3)
    assert result.returncode == 124
    assert result.stdout == "started\n"
    assert "timed out" in result.stderr


def test_missing_node_fails_with_the_way_to_install_it(monkeypatch):
    monkeypatch.delenv("HCP_NODE", raising=False)
    monkeypatch.setattr(harness.shutil, "which", lambda name: None)
    with pytest.raises(harness.MicroPythonUnavailable, match=r"run `make test`"):
        run_micropython("print(1)")


def test_missing_npm_package_fails_with_the_way_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(harness, "PACKAGE_DIR", tmp_path / "nothing-here")
    with pytest.raises(harness.MicroPythonUnavailable, match=r"run `make test`"):
        run_micropython("print(1)")


def test_code_in_parts_shares_globals_and_frees_memory_between_parts():
    parts = [
        "import gc\ngc.collect()\nbase = gc.mem_alloc()\njunk = [bytes(1000) for _ in range(500)]",
        "gc.collect()\nprint(gc.mem_alloc() - base > 400000)\ndel junk",
        "gc.collect()\nprint(gc.mem_alloc() - base < 50000)",
        "raise OSError('stop')",
        "print('not reached')",
    ]
    result = run_micropython(parts)
    assert result.stdout == "True\nTrue\n"
    assert result.returncode == 1 and "OSError: stop" in result.stderr
