"""A real browser (Playwright and Debian's chromium) walks the analytics: the
supervisor logs in, opens the figures, sees the chart, filters by a street,
opens the windows and the trend, exports Excel and reads it back with
openpyxl; then filters the evaluations list by local days and exports it
from its Excel link. Screenshots are saved in the test's folder."""

from __future__ import annotations

import openpyxl

from sync_server import org
from tests.harness.collector import VIEWER
from tests.harness.records import add_evaluation
from tests.test_web_browser import browser_page, live_app  # noqa: F401 - fixtures


def test_a_supervisor_filters_sees_a_chart_and_exports_excel(live_app, browser_page, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    app, base = live_app
    engine = app.extensions["hcp_engine"]
    with engine.begin() as conn:
        org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
        org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")
        org.add(conn, "windows", "A02", "闻韶二号窗", "hall-ws")
    for n, (stars, window) in enumerate(
        [(5, "A01"), (4, "A01"), (1, "A02"), (5, "A02"), (2, "A01")]
    ):
        add_evaluation(engine, f"kp-01:{n + 1}", stars, f"2026-11-2{n}T02:00:00Z", window_id=window)
    page = browser_page

    page.goto(base + "/login")
    page.fill("#username", VIEWER[0])
    page.fill("#password", VIEWER[1])
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")

    page.goto(base + "/analytics")
    expect(page.locator("h1")).to_have_text("分单位统计")
    chart = page.locator("svg.chart").first
    expect(chart).to_be_visible()
    expect(chart.locator("title").first).to_have_text("各单位有效评价数与差评数")
    page.screenshot(path=str(tmp_path / "analytics-district.png"), full_page=True)

    page.fill("input[name=unit]", "370305001")
    page.fill("input[name=since]", "2026-11-01")
    page.click("form.filters button[type=submit]")
    expect(page.locator("#figures tbody tr").first).to_contain_text("闻韶街道便民服务中心")
    expect(page.locator("#figures tbody tr").last).to_contain_text("60.0%")  # 3 of 5

    page.click("nav.subnav >> text=分窗口统计")
    expect(page.locator("h1")).to_have_text("分窗口统计")
    rows = page.locator("#figures tbody tr")
    expect(rows.nth(0)).to_contain_text("闻韶一号窗")
    expect(rows.nth(0)).to_contain_text("66.7%")
    page.screenshot(path=str(tmp_path / "analytics-windows.png"), full_page=True)

    with page.expect_download() as caught:
        page.click("text=Excel")
    path = tmp_path / "windows.xlsx"
    caught.value.save_as(path)
    sheet = openpyxl.load_workbook(path).active
    table = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert table[0][0] == "分窗口统计"
    assert table[1][:2] == ["统计时段", "2026-11-01 — —"]
    assert table[2][:2] == ["单位", "闻韶街道 (370305001)"]
    assert [row[:2] + row[7:11] for row in table[5:7]] == [
        ["闻韶一号窗", "A01", 3, 2, 1, "66.7%"],
        ["闻韶二号窗", "A02", 2, 1, 1, "50.0%"],
    ]

    page.click("nav.subnav >> text=趋势")
    page.select_option("select[name=grain]", "month")
    page.click("form.filters button[type=submit]")
    expect(page.locator("svg.chart polyline, svg.chart circle").first).to_be_attached()
    expect(page.locator("#figures tbody tr").first).to_contain_text("2026-11")
    page.screenshot(path=str(tmp_path / "analytics-trend.png"), full_page=True)
    assert (tmp_path / "analytics-trend.png").stat().st_size > 1000

    # the evaluations list, filtered by local days, exports what it lists
    page.goto(base + "/evaluations")
    page.fill("form.filters input[name=since]", "2026-11-21")
    page.fill("form.filters input[name=until]", "2026-11-22")
    page.click("form.filters button[type=submit]")
    expect(page.locator("body")).to_contain_text("共 2 条评价")
    with page.expect_download() as caught:
        page.click("#evaluations-export >> text=Excel")
    path = tmp_path / "evaluations.xlsx"
    caught.value.save_as(path)
    table = [list(r) for r in openpyxl.load_workbook(path).active.iter_rows(values_only=True)]
    assert table[0][0] == "评价记录"
    assert table[1][:2] == ["统计时段", "2026-11-21 — 2026-11-22"]
    assert [row[0] for row in table[5:7]] == ["kp-01:2", "kp-01:3"]
    assert table[8][:2] == ["合计", 2]
