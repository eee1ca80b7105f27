"""Run Python code under the real MicroPython interpreter (WebAssembly port, Node).

    result = run_micropython("import protocols.canonical\\nprint(1 + 1)")
    result.check()                      # AssertionError with the output if it failed
    assert result.stdout == "2\\n"

`code` may also be a list of parts run one after another in the same
interpreter (same globals; a failing part stops the run). Use parts to
measure RAM: in this port gc.collect() frees nothing while a part is still
running, only between parts, e.g.

    run_micropython(["import gc\\nfrom protocols import serial",
                     "gc.collect()\\nprint(gc.mem_alloc())"])

Each run gets a fresh interpreter whose file system holds the project's
`protocols/`, `hardware/` and `device/` packages under `/lib` (on sys.path)
and the given `files` under `/work` (the working directory). Several
snippets can share one Node process with `run_micropython_many`, which is
much cheaper than one process per snippet. Bytes that a test wants to compare
should be printed as hex by the snippet itself.

If Node or the npm package is missing the run fails (never skips): `make test`
installs both.
"""

import base64
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("run_micropython.mjs")
# the npm package lives in its own folder: the top-level package.json is the
# firmware's package for mip (the micropython-lib convention)
NODE_PREFIX = ROOT / "tools" / "micropython"
PACKAGE_DIR = NODE_PREFIX / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
PROJECT_PACKAGES = ("protocols", "hardware", "device")
TIMEOUT_RETURNCODE = 124


class MicroPythonUnavailable(RuntimeError):
    """Node or the MicroPython npm package is not installed."""


@dataclass
class MicroPythonResult:
    stdout: str
    stderr: str
    returncode: int
    seconds: float = 0.0  # wall time of the Node process divided by its runs

    @property
    def ok(self):
        return self.returncode == 0

    def check(self):
        """Raise AssertionError with the output unless the run succeeded."""
        if self.returncode != 0:
            raise AssertionError(
                f"MicroPython run failed with returncode {self.returncode}\n"
                f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
            )
        return self


def node_binary():
    """The Node executable, or MicroPythonUnavailable with the way to get it."""
    node = os.environ.get("HCP_NODE") or shutil.which("node")
    if not node:
        raise MicroPythonUnavailable(
            "Node.js is not installed, so the MicroPython tests cannot run: "
            "run `make test`, which installs Node and the MicroPython npm package."
        )
    if not (PACKAGE_DIR / "micropython.mjs").is_file():
        raise MicroPythonUnavailable(
            f"the MicroPython npm package is missing ({PACKAGE_DIR}): "
            "run `make test` (or `npm ci --prefix tools/micropython`), which installs it."
        )
    return node


def _encode_files(files):
    encoded = []
    for path, content in (files or {}).items():
        if isinstance(content, str):
            content = content.encode("utf-8")
        encoded.append({"path": str(path), "b64": base64.b64encode(content).decode("ascii")})
    return encoded


def run_micropython_many(snippets, timeout=60):
    """Run several snippets, each in a fresh interpreter, in one Node process.

    snippets: iterable of code (a string or a list of parts) or (code, files)
    tuples. Returns one MicroPythonResult per snippet. timeout (seconds)
    covers the whole batch; when it expires the unfinished runs get
    returncode 124 and a message in stderr (output printed before the hang
    is kept).
    """
    runs = []
    for item in snippets:
        code, files = (item, None) if isinstance(item, (str, list)) else item
        if isinstance(code, list) and not all(isinstance(part, str) for part in code):
            raise TypeError("code must be a string or a list of strings")
        runs.append({"code": code, "files": _encode_files(files)})
    if not runs:
        return []
    job = {
        "root": str(ROOT),
        "package_dir": str(PACKAGE_DIR),
        "packages": list(PROJECT_PACKAGES),
        "runs": runs,
    }
    node = node_binary()
    started = time.perf_counter()
    timed_out = False
    try:
        proc = subprocess.run(
            [node, str(SCRIPT)],
            input=json.dumps(job).encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            cwd=ROOT,
        )
        raw_out, raw_err, node_rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        raw_out, raw_err, node_rc = exc.stdout or b"", exc.stderr or b"", None
        timed_out = True
    elapsed = time.perf_counter() - started

    outs = [[] for _ in runs]
    errs = [[] for _ in runs]
    codes = [None] * len(runs)
    for line in raw_out.decode("utf-8", "replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut short by the kill after a timeout
        run = event["run"]
        if "returncode" in event:
            codes[run] = event["returncode"]
        else:
            (outs if event["fd"] == 1 else errs)[run].append(event["text"])

    node_err = raw_err.decode("utf-8", "replace")
    if not timed_out and node_rc != 0 and None in codes:
        if node_rc == 3:  # the runner could not import the npm package
            raise MicroPythonUnavailable(f"{node_err.strip()}\nrun `make test`, which installs it.")
        raise RuntimeError(f"the MicroPython runner crashed (exit {node_rc}):\n{node_err}")

    results = []
    for i in range(len(runs)):
        stderr = "".join(errs[i])
        returncode = codes[i]
        if returncode is None:
            returncode = TIMEOUT_RETURNCODE
            reason = f"timed out after {timeout} s" if timed_out else "runner stopped early"
            stderr += f"MicroPython run {reason}\n{node_err}"
        results.append(MicroPythonResult("".join(outs[i]), stderr, returncode, elapsed / len(runs)))
    return results


def run_micropython(code, files=None, timeout=60):
    """Run one snippet under MicroPython; see the module docstring."""
    return run_micropython_many([(code, files)], timeout=timeout)[0]


class MicroPythonRunner:
    """What the `micropython` fixture gives: call it like run_micropython."""

    def __call__(self, code, files=None, timeout=60):
        return run_micropython(code, files, timeout)

    def many(self, snippets, timeout=60):
        return run_micropython_many(snippets, timeout)


@pytest.fixture
def micropython():
    node_binary()  # fail early with the installation hint
    return MicroPythonRunner()
