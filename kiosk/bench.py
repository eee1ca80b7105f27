"""Kiosk figures for `hcp bench`, each against a baseline measured in the same run.

frame      KioskApp.step() (inputs, update, draw, flip) on the start and the
           level screen; baseline: an empty frame (fill + flip) on the same
           display.
latency    from a tap posted to pygame's queue to the end of the frame that
           shows the next scene, over whole ratings (start -> unit -> window
           -> level -> tags -> comment -> phone -> thanks); baseline: from an
           event posted to the end of an empty frame that took it. Goal: under
           50 ms.
cold start from starting `python -m kiosk` (headless) to its first frame;
           baseline: a Python process that imports pygame, opens the same
           display and flips once.

The display is SDL's dummy driver (software surfaces, no vsync), so the
figures say what the kiosk's own code costs on this machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LATENCY_GOAL_MS = 50.0
KEY_HEX = "22" * 32
_BASELINE_START = (
    "import os, time; t = time.perf_counter(); os.environ['SDL_VIDEODRIVER'] = 'dummy'; "
    "import pygame; pygame.display.init(); pygame.font.init(); "
    "s = pygame.display.set_mode((1280, 800)); s.fill((0, 0, 0)); pygame.display.flip(); "
    "print('ready', flush=True)"
)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return {"median_ms": _ms(statistics.median(ordered)), "p95_ms": _ms(p95), "n": len(ordered)}


def _app(folder: str):
    import pygame

    from kiosk import demo_content
    from kiosk.app import KioskApp
    from kiosk.settings import load
    from kiosk.store import KioskStore
    from protocols import messages

    settings = load(None, {"device_id": "ks-bench", "key": KEY_HEX, "http_port": 0})
    store = KioskStore(folder)
    config = demo_content.config(1, "https://hcp.example.cn/followup")
    store.put_setting("config", messages.decode(messages.encode(config)))
    surface = pygame.display.set_mode((settings["width"], settings["height"]))
    return KioskApp(settings, store, surface), store, surface


def _tap(app, label):
    import pygame

    for button in app.scene.buttons:
        if button.label == label:
            x, y = button.rect.center
            pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONUP, button=1, pos=(x, y)))
            return
    raise RuntimeError(f"no button {label!r} on {app.scene.name}")


def measure(frames: int = 300, ratings: int = 20) -> dict:
    os.environ["SDL_VIDEODRIVER"] = "dummy"
    import pygame

    pygame.display.init()
    pygame.font.init()
    clock = time.perf_counter
    with tempfile.TemporaryDirectory(prefix="hcp-kiosk-bench-") as folder:
        app, store, surface = _app(folder)
        # baseline frame: fill + flip
        empty = []
        for _ in range(frames):
            started = clock()
            pygame.event.get()
            surface.fill((244, 246, 250))
            pygame.display.flip()
            empty.append(clock() - started)
        # the kiosk's frames on the start screen and on the level screen
        start_frames, level_frames = [], []
        for _ in range(frames):
            started = clock()
            app.step()
            start_frames.append(clock() - started)
        _tap(app, "开始评价")
        app.step()
        _tap(app, "区行政审批服务局")
        app.step()
        _tap(app, "区行政审批服务局 A01 综合受理窗口")
        app.step()
        for _ in range(frames):
            started = clock()
            app.step()
            level_frames.append(clock() - started)
        app.home()
        app.step()
        # latency: a tap to the frame that shows the next scene
        path = ["开始评价", "区行政审批服务局", "区行政审批服务局 A01 综合受理窗口", "不满意",
                "等候时间长", "下一步", "下一步", "跳过"]  # fmt: skip
        latencies = []
        for _ in range(ratings):
            for label in path:
                before = app.switches
                started = clock()
                _tap(app, label)
                app.step()
                if label != "等候时间长" and app.switches == before + 1:
                    latencies.append(clock() - started)
            app.home()
            app.step()
        event_base = []
        for _ in range(len(latencies)):
            started = clock()
            pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONUP, button=1, pos=(5, 5)))
            pygame.event.get()
            surface.fill((244, 246, 250))
            pygame.display.flip()
            event_base.append(clock() - started)
        made = store.last_seq
        store.close()
    pygame.display.quit()
    latency = _summary(latencies)
    return {
        "display": "SDL dummy driver, 1280x800",
        "frame_empty": _summary(empty),
        "frame_start_screen": _summary(start_frames),
        "frame_level_screen": _summary(level_frames),
        "latency_baseline": _summary(event_base),
        "latency_tap_to_next_scene": latency,
        "latency_goal_ms": LATENCY_GOAL_MS,
        "latency_p95_within_goal": latency["p95_ms"] < LATENCY_GOAL_MS,
        "ratings_made": made,
        "cold_start": cold_start(),
    }


def _time_to_ready(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)  # fmt: skip
    try:
        for line in process.stdout:
            if "ready" in line:
                return time.perf_counter() - started
        raise RuntimeError("no ready line from " + " ".join(command))
    finally:
        process.terminate()
        process.wait(10)


def cold_start(runs: int = 3) -> dict:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}
    base, kiosk = [], []
    with tempfile.TemporaryDirectory(prefix="hcp-kiosk-start-") as folder:
        settings = Path(folder) / "settings.json"
        settings.write_text(json.dumps({
            "device_id": "ks-bench", "key": KEY_HEX, "http_port": 0, "broker_port": 9,
            "data_dir": str(Path(folder) / "data"),
        }))  # fmt: skip
        for _ in range(runs):
            base.append(_time_to_ready([sys.executable, "-c", _BASELINE_START], env))
            kiosk.append(_time_to_ready(
                [sys.executable, "-m", "kiosk", "--settings", str(settings), "--headless"], env
            ))  # fmt: skip
    return {"baseline": _summary(base), "kiosk": _summary(kiosk)}
