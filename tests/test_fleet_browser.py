"""The fleet pages in a real browser (Playwright, Debian's chromium): an admin
sets a device's desired configuration, sees the drift, queues a command,
starts a rollout and stops it. Skipped where chromium or Playwright is
missing, unless CI is set."""

from __future__ import annotations

from sync_server import db, firmware, fleet, org
from sync_server.cli import serve_web
from tests.harness.collector import ADMIN, add_users, make_app
from tests.test_web_browser import browser_page  # noqa: F401 (fixture)


def test_an_admin_walks_the_fleet_pages(tmp_path, browser_page):  # noqa: F811
    from playwright.sync_api import expect

    app = make_app(tmp_path)
    add_users(app)
    engine = app.extensions["hcp_engine"]
    db.add_device(engine, "kp-01", "33" * 32, window_id="A01")
    with engine.begin() as conn:
        org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
        org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")
        conn.execute(db.staff.insert().values(id="1001", name="张敏", created_at=db.utc_now()))
        firmware.add_bundle(conn, "0.2.0", {"device/app.mpy": b"x" * 5000}, "test")
    server, thread = serve_web(app, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_port}"
    page = browser_page
    try:
        page.goto(base + "/login")
        page.fill("#username", ADMIN[0])
        page.fill("#password", ADMIN[1])
        page.click("button[type=submit]")
        page.click("header >> text=设备管理")
        page.wait_for_url(base + "/fleet")
        page.click("#fleet a:text('kp-01')")
        page.wait_for_url(base + "/fleet/kp-01")
        page.select_option("select[name=window_id]", "A01")
        page.select_option("select[name=staff_id]", "1001")
        page.fill("textarea[name=hours]", "1-5 08:30-12:00")
        page.click("#config-form button[type=submit]")
        page.wait_for_url(base + "/fleet/kp-01")
        expect(page.locator("#drift")).to_contain_text("期望版本: 1")
        expect(page.locator("#drift")).to_contain_text("偏差始于")
        # the keypad reports the version: in step
        with engine.begin() as conn:
            fleet.observe_status(conn, "kp-01", {"online": True, "config_version": 1}, live=True)
        page.reload()
        expect(page.locator("#drift")).to_contain_text("一致")
        page.select_option("#command-form select[name=cmd]", "reboot")
        page.click("#command-form button[type=submit]")
        expect(page.locator("#commands tbody tr").first).to_contain_text("等待设备上线")
        expect(page.locator("#commands tbody tr").first).to_contain_text("重启")
        # a firmware rollout, then stopped before the device took it
        page.click("header >> text=固件")
        page.wait_for_url(base + "/firmware")
        page.fill("#rollout-form input[name=group]", "devices:kp-01")
        page.click("#rollout-form button[type=submit]")
        expect(page.locator(".rollout").first).to_contain_text("推送中")
        expect(page.locator(".rollout .target-waiting")).to_contain_text("等待设备上线")
        page.click(".rollout button:text('停止推送')")
        expect(page.locator(".rollout").first).to_contain_text("已停止")
        expect(page.locator(".rollout .target-cancelled")).to_contain_text("送达前已取消")
        page.goto(base + "/fleet/kp-01")
        expect(page.locator("#commands")).to_contain_text("送达前已取消")
    finally:
        server.shutdown()
        thread.join(5)
        engine.dispose()
