"""Running the kiosk: the display, the store, the app, the sync worker and the
local API, started together and stopped together (`hcp kiosk`)."""

from __future__ import annotations

import os
import signal
import sys
import time

STARTED = time.perf_counter()  # for the cold start figure (`hcp bench`)

FPS = 30


def run(settings: dict, headless: bool = False, duration: float | None = None) -> int:
    if headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
    import pygame

    from kiosk.app import KioskApp
    from kiosk.assets import Assets, FontMissing
    from kiosk.service import SyncWorker
    from kiosk.store import KioskStore

    pygame.display.init()
    pygame.font.init()
    try:
        assets = Assets()
    except FontMissing as exc:
        print(f"hcp kiosk: {exc}", file=sys.stderr)
        return 2
    if settings["fullscreen"] and not headless:
        surface = pygame.display.set_mode((0, 0), pygame.FULLSCREEN)
        pygame.mouse.set_visible(False)  # a touchscreen: no pointer
    else:
        surface = pygame.display.set_mode((settings["width"], settings["height"]))
    pygame.display.set_caption(f"hcp kiosk {settings['device_id']}")
    store = KioskStore(settings["data_dir"])
    app = KioskApp(settings, store, surface, assets)
    worker = SyncWorker(settings, app).start()
    server = None
    if settings["http_port"]:
        from kiosk.service import serve_http

        server = serve_http(app, settings["http_port"])

    def stop(*_):
        app.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    clock = pygame.time.Clock()
    deadline = time.monotonic() + duration if duration else None
    try:
        app.step()
        ready_ms = (time.perf_counter() - STARTED) * 1000
        api = f"http://127.0.0.1:{settings['http_port']}" if server else "off"
        print(
            f"hcp kiosk: {settings['device_id']} ready, first frame {ready_ms:.0f} ms "
            f"after start; local API {api}",
            flush=True,
        )
        while app.running:
            app.step()
            clock.tick(FPS)
            if deadline and time.monotonic() >= deadline:
                break
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        worker.stop()
        store.close()
        pygame.quit()
    return 0
