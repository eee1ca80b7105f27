"""A kiosk in its own process (`python -m kiosk`), for LocalStack, the demo,
the bench and the tests: started with a settings file, stopped with SIGTERM,
or killed (SIGKILL) the way a power cut ends it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

READY = "ready, first frame"


class KioskProcess:
    def __init__(self, settings_path, headless: bool = True, log_path=None, extra_env=None):
        self.settings_path = Path(settings_path)
        self.log_path = Path(log_path) if log_path else None
        env = dict(os.environ)
        env.update(extra_env or {})
        command = [sys.executable, "-m", "kiosk", "--settings", str(self.settings_path)]
        if headless:
            command.append("--headless")
            env["SDL_VIDEODRIVER"] = "dummy"
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.lines: list[str] = []
        self.ready_at: float | None = None  # seconds from Popen to the first frame
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        log = self.log_path.open("a") if self.log_path else None
        try:
            for line in self.process.stdout:
                self.lines.append(line.rstrip("\n"))
                if log:
                    log.write(line)
                    log.flush()
                if READY in line and not self._ready.is_set():
                    self.ready_at = time.perf_counter() - self.started
                    self._ready.set()
        finally:
            if log:
                log.close()
            self._ready.set()

    def wait_ready(self, timeout: float = 30) -> float:
        """Seconds from start to the first frame; RuntimeError if it never came."""
        self._ready.wait(timeout)
        if self.ready_at is None:
            raise RuntimeError("the kiosk did not start: " + " | ".join(self.lines[-5:]))
        return self.ready_at

    def stop(self, timeout: float = 10) -> int | None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(2)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: no goodbye, no flush (a power cut)."""
        self.process.kill()
        self.process.wait()
        self._reader.join(2)
