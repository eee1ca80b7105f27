"""One real browser walk (Playwright, Debian's chromium): an admin sees the
ratings reach the simulated province and the lag on the outbox page, then a
supervisor finds a planted burst of fake good reviews, opens its evidence
and starts a 复核."""

from __future__ import annotations

import datetime as dt

import pytest

from hcp.sim_province import start_beside
from sync_server import gaming_month, outbox_sender
from tests.harness.collector import ADMIN, VIEWER, add_users, make_app
from tests.harness.records import add_evaluation
from tests.harness.shared_worlds import serve_web
from tests.test_province import register_event, world
from tests.test_web_browser import browser_page  # noqa: F401  (a fixture)


@pytest.fixture
def live(tmp_path):
    province, province_server, url, credential = start_beside(tmp_path)
    app = make_app(tmp_path, SESSION_COOKIE_SECURE=False)
    add_users(app)
    engine = app.extensions["hcp_engine"]
    server, thread = serve_web(app, "127.0.0.1", 0)
    sender_thread, stop = outbox_sender.start(
        engine,
        {"HCP_PROVINCE_URL": url, "HCP_PROVINCE_CREDENTIAL": str(credential),
         "HCP_OUTBOX_POLL_S": 0.05},
    )  # fmt: skip
    yield app, f"http://127.0.0.1:{server.server_port}", province
    stop.set()
    sender_thread.join(5)
    server.shutdown()
    thread.join(5)
    province_server.shutdown()
    engine.dispose()


def _login(page, base, who):
    page.goto(base + "/login")
    page.fill("#username", who[0])
    page.fill("#password", who[1])
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def test_ratings_reach_the_province_and_a_burst_is_flagged(live, browser_page):  # noqa: F811
    from playwright.sync_api import expect

    app, base, province = live
    engine = app.extensions["hcp_engine"]
    page = browser_page
    world(engine)
    now = dt.datetime.now(dt.UTC)
    register_event(
        engine, "C1", handled_at=(now - dt.timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    add_evaluation(engine, "kp-01:1", 5, rated_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                   case_no="C1", service_no="1", tags='["H501"]', content_version="hcp-demo-1")  # fmt: skip
    _login(page, base, ADMIN)
    page.click("text=上报省平台")
    expect(page.locator("h1")).to_have_text("上报省平台")
    for _ in range(40):  # the page shows what the sender has done by now
        if page.locator("#backlog-acked").inner_text() == "2":
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(page.locator("#backlog-acked")).to_have_text("2")
    expect(page.locator("#unsent")).to_have_text("0")
    assert page.locator("#p95").inner_text() != "—"
    expect(page.locator("#sender-state")).to_contain_text("上报正常")
    assert [entry[1] for entry in province.log] == ["C1/1", "kp-01:1"]

    gaming_month.plant_burst(engine, "kp-01", "A01", count=8)
    page.context.clear_cookies()  # a second person at another desk
    _login(page, base, VIEWER)
    page.click("text=刷评线索")
    page.fill("input[name=days]", "2")
    page.click("text=立即筛查")
    expect(page.locator("[role=status]")).to_contain_text("新增线索")
    page.click("#flags tbody tr:has-text('同一评价器未发起办件却集中评价') a")
    expect(page.locator("#flag-ratings tbody tr")).to_have_count(8)
    page.fill("input[name=note]", "调取窗口录像核实")
    page.click("text=发起复核")
    expect(page.locator("#flag-state")).to_contain_text("复核中")
