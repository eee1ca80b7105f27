"""Printable window QR sheets: the sheet page prints as exactly one A4 page
per sheet of six labels, with nothing of the screen page on paper, and each
printed code decodes (zxing-cpp) to its window's rating page; each page can
also be saved as an SVG file that decodes the same way.

Chromium through Playwright prints the page to PDF (print media, A4) and
draws it in print media for the decoding; skipped where chromium or
Playwright is missing, unless CI is set (then it fails).
"""

from __future__ import annotations

import io
import os
import re

import pytest

from sync_server import org
from tests.harness import shared_worlds
from tests.harness.collector import ADMIN
from tests.harness.shared_worlds import serve_web
from tests.test_citizen import build
from tests.test_citizen_browser import decode
from tests.test_web_browser import CHROMIUM, CHROMIUM_ARGS, _need

# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres

WINDOWS = ["A01", "A02", "A03", "A04", "A05", "A06", "B01"]  # 7 labels: two A4 pages


@pytest.fixture
def live(engine_app):
    engine_app.tokens = build(engine_app)
    with engine_app.extensions["hcp_engine"].begin() as conn:
        for number in range(2, 7):
            org.add(conn, "windows", f"A0{number}", f"闻韶{number}号窗", "hall-ws")
    server, thread = serve_web(engine_app, "127.0.0.1", 0)
    engine_app.base = f"http://127.0.0.1:{server.server_port}"
    yield engine_app
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module; each test opens its own context."""
    playwright_sync = pytest.importorskip("playwright.sync_api")
    _need(os.path.exists(CHROMIUM), f"no chromium at {CHROMIUM}")
    with playwright_sync.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(live, browser):
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.goto(live.base + "/login")
    page.fill("#username", ADMIN[0])
    page.fill("#password", ADMIN[1])
    page.click("button[type=submit]")
    page.wait_for_url(live.base + "/")
    yield page
    context.close()


def pdf_pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf))


def decode_svg(data: bytes) -> list[str]:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame
    import zxingcpp

    image = pygame.image.load(io.BytesIO(data), "sheet.svg")
    width, height = image.get_size()
    red = pygame.image.tobytes(image, "RGB")[0::3]
    return [c.text for c in zxingcpp.read_barcodes(memoryview(red).cast("B", (height, width)))]


def test_the_sheet_prints_one_a4_page_per_six_labels_and_every_code_reads(live, page):
    page.goto(live.base + "/qr/windows")
    assert page.locator(".sheet svg").count() == 2
    expected = {f"{live.base}/r/w/{w}" for w in WINDOWS}
    # on paper: two A4 pages, whatever the screen page has around the sheets
    assert pdf_pages(page.pdf(format="A4", prefer_css_page_size=True)) == 2
    page.emulate_media(media="print")
    assert page.locator("header").is_hidden() and page.locator("#windows").is_hidden()
    found = set()
    for sheet in page.locator(".sheet").all():
        box = sheet.bounding_box()
        assert round(box["width"]) == round(210 * 96 / 25.4)  # 210 mm at CSS 96 dpi
        found.update(decode(sheet.screenshot()))
    assert found == expected
    # the same pages as SVG files
    page.emulate_media(media="screen")
    first = page.request.get(live.base + "/qr/windows/sheet-1.svg")
    second = page.request.get(live.base + "/qr/windows/sheet-2.svg")
    assert first.headers["content-disposition"] == 'attachment; filename="window-qr-1.svg"'
    assert set(decode_svg(first.body())) | set(decode_svg(second.body())) == expected
    assert len(decode_svg(second.body())) == 1
    assert page.request.get(live.base + "/qr/windows/sheet-3.svg").status == 404
    # one unit's sheet: 雪宫 has one window, one page
    only = page.request.get(live.base + "/qr/windows/sheet-1.svg?unit=hall-xg")
    assert decode_svg(only.body()) == [f"{live.base}/r/w/B01"]
