"""One real browser session: log in, watch the dashboard update from a live ingest.

Runs Debian's chromium through Playwright. Skipped where chromium or
Playwright is missing, unless CI is set (then it fails).
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import pytest

from sync_server import db
from sync_server.cli import serve_web
from sync_server.ingest import Ingestor
from tests.harness.collector import ADMIN, add_users, make_app
from tests.harness.records import CONTACT, batch, contact_entry, ev_topic, signed

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def _need(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture
def browser_page():
    playwright_sync = pytest.importorskip("playwright.sync_api")
    _need(os.path.exists(CHROMIUM), f"no chromium at {CHROMIUM}")
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        yield page
        browser.close()


@pytest.fixture
def live_app(tmp_path):
    # poll quickly so the test does not wait long for the dashboard
    app = make_app(tmp_path, HCP_DASHBOARD_POLL_MS=500)
    add_users(app)
    server, thread = serve_web(app, "127.0.0.1", 0)
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)
    app.extensions["hcp_engine"].dispose()


def test_login_and_watch_a_rating_arrive(live_app, browser_page):
    from playwright.sync_api import expect

    app, base = live_app
    engine = app.extensions["hcp_engine"]
    page = browser_page

    page.goto(base + "/")
    assert page.url == base + "/login?next=/"
    page.fill("#username", ADMIN[0])
    page.fill("#password", ADMIN[1])
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")

    expect(page.locator("header .product")).to_have_text("临淄区政务服务好差评")
    expect(page.locator("#summary")).to_contain_text("评价总数")
    expect(page.locator("#summary")).to_contain_text("好评率")
    expect(page.locator("#total")).to_have_text("0")
    expect(page.locator("#good-rate")).to_have_text("—")
    # the admin's menu has twenty entries: none of their labels breaks over two lines
    heights = {round(box["height"]) for box in (a.bounding_box() for a in page.locator("header nav a").all())}  # fmt: skip
    assert max(heights) < 1.5 * min(heights), heights  # the active one is underlined

    # a keypad's batch goes through the real ingest path
    key = secrets.token_bytes(32)
    db.add_device(engine, "kp-web", key.hex(), window_id="A01")
    made = dict(device_id="kp-web", key=key, rated_at="2026-11-26T01:45:00Z", window_id="A01")
    records = [signed(1, 5, **made), signed(2, 1, **made)]
    contacts = [contact_entry("kp-web:2", key=key)]
    payload = batch(records, device_id="kp-web", contacts=contacts)
    outcome = Ingestor(engine).process(ev_topic("kp-web"), payload)
    assert outcome.stored == [1, 2] and outcome.quarantined == []

    expect(page.locator("#total")).to_have_text("2", timeout=5000)
    expect(page.locator("#good-rate")).to_have_text("50.0%")
    expect(page.locator("#stars-1")).to_have_text("1")
    first_row = page.locator("#latest-body tr").first
    expect(first_row).to_contain_text("2026-11-26 09:45:00")
    expect(page.locator("#latest-body")).to_contain_text("非常不满意")
    expect(page.locator("#latest-body")).to_contain_text("窗口评价器")
    expect(page.locator("#updated")).to_have_text(re.compile(r"^已更新 "))
    assert CONTACT not in page.content()

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    page.click("text=English")
    expect(page.locator("header .product")).to_have_text(
        "Linzi District Government Service Ratings"
    )
    expect(page.locator("#latest-body")).to_contain_text("Very dissatisfied")


def test_a_unit_manager_sees_only_their_unit(live_app, browser_page):
    from playwright.sync_api import expect

    from tests.test_access import PASSWORD, USERS, build_world

    app, base = live_app
    build_world(app)
    page = browser_page
    page.goto(base + "/login")
    page.fill("#username", USERS["unit_manager"][0])
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    expect(page.locator("#who")).to_have_text("um · 单位管理员")
    expect(page.locator("#total")).to_have_text("1")

    page.goto(base + "/evaluations")
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("A01")
    assert "雪宫的差评" not in page.content()

    page.click("header nav >> text=组织机构")
    expect(page.locator("#org-tree")).to_contain_text("闻韶街道")
    expect(page.locator("#org-tree")).to_contain_text("闻韶街道便民服务中心")
    assert "雪宫街道" not in page.locator("#org-tree").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "unit-manager-org.png"), full_page=True)

    # the rating's page reveals the contact only when asked, and says it is logged
    page.goto(base + "/evaluations/ws:1")
    assert CONTACT not in page.content()
    page.click("#reveal")
    expect(page.locator("#contact")).to_have_text(CONTACT)
    page.screenshot(path=str(ARTIFACTS / "unit-manager-contact.png"), full_page=True)
    assert page.goto(base + "/evaluations/xg:1").status == 404
