"""The citizen pages in a real browser at a phone's size (360×640), and the
QR codes decoded from what the browser draws, on SQLite and PostgreSQL.

Runs Debian's chromium through Playwright; skipped where chromium or
Playwright is missing, unless CI is set (then it fails).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import urllib.request

import pytest

from tests.harness import shared_worlds
from tests.harness.collector import ADMIN
from tests.harness.shared_worlds import serve_web
from tests.test_citizen import PHONE, build, ratings, register
from tests.test_paper import today
from tests.test_web_browser import CHROMIUM, CHROMIUM_ARGS, _need

# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres

PHONE_SIZE = {"width": 360, "height": 640}
PHONE_AGENT = (
    "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"
)


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module; each test opens its own context (no
    cookies or storage shared between tests)."""
    playwright_sync = pytest.importorskip("playwright.sync_api")
    _need(os.path.exists(CHROMIUM), f"no chromium at {CHROMIUM}")
    with playwright_sync.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def live(engine_app):
    engine_app.tokens = build(engine_app)
    server, thread = serve_web(engine_app, "127.0.0.1", 0)
    engine_app.base = f"http://127.0.0.1:{server.server_port}"
    yield engine_app
    server.shutdown()
    thread.join(5)


def phone_page(browser):
    context = browser.new_context(viewport=PHONE_SIZE, user_agent=PHONE_AGENT)
    return context.new_page()


def fits_the_phone(page) -> None:
    """Nothing wider than the screen, no script at all, large type."""
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE_SIZE["width"]
    assert page.locator("script").count() == 0
    size = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.rate')).fontSize)")
    assert size >= 18


def decode(png: bytes) -> list[str]:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame
    import zxingcpp

    image = pygame.image.load(io.BytesIO(png), "shot.png")
    w, h = image.get_size()
    red = pygame.image.tobytes(image, "RGB")[0::3]
    return [code.text for code in zxingcpp.read_barcodes(memoryview(red).cast("B", (h, w)))]


def case_qr(live, case_no) -> dict:
    request = urllib.request.Request(
        f"{live.base}/api/v1/case-qr?case_no={case_no}&service_no=1",
        headers={"Authorization": f"Bearer {live.tokens['clerk_ws']}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_a_citizen_rates_by_window_qr_case_qr_and_portal_on_a_phone(live, browser):
    from playwright.sync_api import expect

    register(live, "LZ2026112730001")
    register(live, "LZ2026112730002")
    register(live, "LZ2026112730003", phone=PHONE)
    page = phone_page(browser)

    # the window's static QR code: the case number, a level, a reason, a phone
    page.goto(live.base + "/r/w/A01")
    expect(page.locator("h1")).to_have_text("服务评价")
    fits_the_phone(page)
    page.fill("#case_no", "LZ2026112730001")
    page.click("#level-2")
    expect(page.locator("#chosen")).to_have_text("您的评价：不满意")
    fits_the_phone(page)
    page.click("#send")  # no reason yet
    expect(page.locator("#error")).to_have_text(
        "不满意的评价需要说明原因：请勾选原因或在意见中填写。"
    )
    page.check("text=等候时间长")
    page.fill("#comment", "排队一个小时")
    page.fill("#phone", PHONE)
    page.check("#consent")
    page.click("#send")
    expect(page.locator("#notice")).to_have_text("感谢您的评价！")

    # the case's dynamic QR code, as the window PC shows it
    qr = case_qr(live, "LZ2026112730002")
    page.set_content(f"<body style='margin:0;background:#fff'>{qr['svg']}</body>")
    assert decode(page.screenshot()) == [qr["url"]]
    page.goto(qr["url"])
    expect(page.locator("#subject")).to_have_text("办件 LZ2026112730002")
    fits_the_phone(page)
    page.click("#level-5")
    page.check("text=一次办好")
    page.click("#send")
    expect(page.locator("#notice")).to_have_text("感谢您的评价！")
    page.goto(qr["url"])
    expect(page.locator("#notice")).to_have_text("已评价")
    expect(page.locator("#append")).to_have_text("追加评价")

    # the web portal: the case number and the phone's last four digits
    page.goto(live.base + "/rate")
    fits_the_phone(page)
    page.fill("#case_no", "LZ2026112730003")
    page.fill("#check", "0000")
    page.click("#find")
    expect(page.locator("#error")).to_have_text("没有与该办件号和校验码相符的业务。")
    page.fill("#case_no", "LZ2026112730003")
    page.fill("#check", PHONE[-4:])
    page.click("#find")
    expect(page.locator("#subject")).to_have_text("办件 LZ2026112730003")
    page.click("#level-4")
    page.click("#send")
    expect(page.locator("#notice")).to_have_text("感谢您的评价！")

    stored = {r["case_no"]: r for r in ratings(live)}
    assert {case: r["channel"] for case, r in stored.items()} == {
        "LZ2026112730001": "qr_window",
        "LZ2026112730002": "qr_case",
        "LZ2026112730003": "web",
    }
    assert stored["LZ2026112730003"]["client"] == "mobile"
    assert stored["LZ2026112730001"]["tags"] == '["H201"]'


def test_the_window_label_decodes_to_its_page_and_the_clerk_types_a_card(live, browser):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(live.base + "/login")
    page.fill("#username", ADMIN[0])
    page.fill("#password", ADMIN[1])
    page.click("button[type=submit]")
    page.wait_for_url(live.base + "/")
    page.goto(live.base + "/qr/windows/A01.svg")
    assert decode(page.screenshot()) == [live.base + "/r/w/A01"]
    page.goto(live.base + "/qr/windows")
    expect(page.locator("#windows")).to_contain_text("闻韶一号窗")
    assert page.locator(".sheet svg").count() == 1

    # print two cards of A01, then type them in at the keyboard
    page.goto(live.base + "/paper")
    page.select_option("#window", "A01")
    page.fill("#count", "2")
    page.click("#print")
    expect(page.locator(".card-no")).to_have_text(["A01-00001", "A01-00002"])
    assert live.base + "/r/w/A01" in decode(page.locator("#card-A01-00001 .qr svg").screenshot())
    page.goto(live.base + "/paper/entry")
    card_day = (today() - dt.timedelta(days=1)).isoformat()
    assert page.evaluate("document.activeElement.id") == "card_no"
    page.keyboard.type("A01-00001")
    page.keyboard.press("Tab")
    page.keyboard.type(card_day)
    page.keyboard.press("Tab")
    page.keyboard.type("4")
    page.keyboard.press("Tab")
    page.keyboard.type("1 2")
    page.keyboard.press("Enter")
    expect(page.locator("#saved")).to_have_text("评议卡 A01-00001 已保存。")
    assert page.evaluate("document.activeElement.id") == "card_no"  # the next card ready
    assert page.input_value("#card_date") == card_day
    page.keyboard.type("A01-00002")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.type("1")
    page.keyboard.press("Enter")
    expect(page.locator("#saved")).to_have_text("评议卡 A01-00002 已保存。")
    stored = sorted(ratings(live), key=lambda r: r["stars"])
    assert [(r["channel"], r["stars"], r["tags"]) for r in stored] == [
        ("paper", 2, '["H201", "H202"]'),
        ("paper", 5, None),
    ]
    assert {r["entered_by"] for r in stored} == {"admin"}
