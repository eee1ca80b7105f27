"""Figures by org subtree: counts per level, 差评数 and 好评率 (its formula a
setting), by the unit of each rating's time, and their Excel/CSV export.
Read from the pre-aggregated figures (sync_server/figures.py); periods are
local days (Asia/Shanghai)."""

from __future__ import annotations

import io

import openpyxl
import pytest

from sync_server import analytics, org
from tests.harness.collector import app_with_users
from tests.harness.records import add_evaluation
from tests.test_access import build_world, client_as


def _rows(figures):
    return {row["unit_id"]: row for row in figures["rows"]}


def test_a_window_moved_between_streets_keeps_its_past_ratings_where_they_were(engine_app):
    engine = build_world(engine_app)  # ws:1 (1 star) at A01 in 闻韶, xg:1 (2) at B01 in 雪宫
    add_evaluation(engine, "ws:2", 5, "2026-11-20T01:00:00Z", window_id="A01")
    with engine.begin() as conn:
        org.move(conn, "windows", "A01", "hall-xg", at="2026-11-27T00:00:00Z")
    add_evaluation(engine, "ws:3", 4, "2026-11-27T01:00:00Z", window_id="A01")
    add_evaluation(engine, "ws:4", 3, "2026-11-27T02:00:00Z", window_id="A01", excluded=True)
    add_evaluation(engine, "nowhere:1", 5, "2026-11-27T02:00:00Z", window_id="Z99")  # not placed
    figures = client_as(engine_app, "supervisor").get("/api/v1/analytics/units").get_json()
    assert figures["root"] == {"id": "370305", "name": "临淄区"}
    rows = _rows(figures)
    assert len(figures["rows"]) == 13  # 12 streets and towns, and the district itself
    # ws:1 (2026-11-26) and ws:2 before the move; ws:3 after; ws:4 excluded after review
    assert rows["370305001"]["by_stars"] == {"1": 1, "2": 0, "3": 0, "4": 0, "5": 1}
    assert (rows["370305001"]["valid"], rows["370305001"]["bad"], rows["370305001"]["good_rate"]) == (2, 1, 0.5)  # fmt: skip
    assert rows["370305002"]["by_stars"] == {"1": 0, "2": 1, "3": 0, "4": 1, "5": 0}
    assert figures["total"]["valid"] == 4 and figures["total"]["bad"] == 2
    assert figures["total"]["good_rate"] == 0.5
    assert rows["370305100"]["good_rate"] is None  # no ratings: no rate, not 0%
    # a period picks the ratings of its days only
    since = (
        client_as(engine_app, "admin").get("/api/v1/analytics/units?since=2026-11-27").get_json()
    )
    assert since["total"]["valid"] == 1 and _rows(since)["370305002"]["valid"] == 1


def test_a_unit_manager_gets_their_own_subtree_by_default(engine_app):
    build_world(engine_app)
    figures = client_as(engine_app, "unit_manager").get("/api/v1/analytics/units").get_json()
    assert figures["root"]["id"] == "370305001"
    assert [row["unit_id"] for row in figures["rows"]] == ["hall-ws", "370305001"]
    assert figures["total"]["valid"] == 1


def test_the_good_rate_formula_is_a_setting(tmp_path):
    with app_with_users(tmp_path, HCP_GOOD_RATE_STARS=(5, 4)) as app:
        engine = app.extensions["hcp_engine"]
        for n, stars in enumerate((5, 4, 3, 1), start=1):
            add_evaluation(engine, f"kp-01:{n}", stars, org_id="370305001")
        client = client_as(app, "admin")
        figures = client.get("/api/v1/analytics/units").get_json()
        summary = client.get("/api/v1/evaluations/summary").get_json()
    assert (summary["good"], summary["good_rate"]) == (3, 0.5)  # the dashboard's figure too
    street = _rows(figures)["370305001"]
    assert street["good_rate"] == 0.5  # (5+4) / 4, where the default would give 0.75
    assert street["good"] == 3  # 好评 is still levels 3..5
    assert figures["good_rate_stars"] == [5, 4]


def test_a_bad_setting_is_an_error(tmp_path):
    with app_with_users(tmp_path, HCP_GOOD_RATE_STARS=(6,)) as app:
        with app.test_request_context(), pytest.raises(RuntimeError) as caught:
            analytics.good_rate_stars()
    assert str(caught.value) == "HCP_GOOD_RATE_STARS: must be levels among 1..5"


def test_the_excel_export_has_the_office_layout_and_reads_back(engine_app):
    build_world(engine_app)
    client = client_as(engine_app, "supervisor")
    response = client.get("/analytics/export?format=xlsx&unit=370305001&since=2026-11-01")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == "attachment; filename=hcp-figures.xlsx"
    sheet = openpyxl.load_workbook(io.BytesIO(response.data)).active
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0][0] == "分单位统计"
    assert rows[1][:2] == ["统计时段", "2026-11-01 — —"]
    assert rows[2][:2] == ["单位", "闻韶街道 (370305001)"]
    assert rows[4] == ["单位", "编码", "非常满意", "满意", "基本满意", "不满意", "非常不满意", "有效评价数", "好评", "差评", "好评率"]  # fmt: skip
    assert rows[5] == ["闻韶街道便民服务中心", "hall-ws", 0, 0, 0, 0, 1, 1, 0, 1, "0.0%"]
    assert rows[-1] == ["合计", "370305001", 0, 0, 0, 0, 1, 1, 0, 1, "0.0%"]
    csv_text = client.get("/analytics/export?format=csv&unit=370305001").get_data(as_text=True)
    assert csv_text.startswith("\ufeff分单位统计")
    assert "合计,370305001,0,0,0,0,1,1,0,1,0.0%" in csv_text


def test_the_page_shows_the_figures_in_chinese_and_refuses_a_bad_filter(engine_app):
    build_world(engine_app)
    client = client_as(engine_app, "admin")
    page = client.get("/analytics").get_data(as_text=True)
    assert "分单位统计" in page and "闻韶街道" in page and "合计" in page
    assert "好评率 = 等级 5+4+3 的评价数 / 有效评价数" in page
    bad = client.get("/analytics?since=yesterday")
    assert bad.status_code == 400
    assert "since: must be YYYY-MM-DD (a day in Asia/Shanghai)" in bad.get_data(as_text=True)
    # the chart beside the table: an accessible SVG with the same numbers
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="chart"' in page
    assert '<title id="chart-' in page and "各单位有效评价数与差评数" in page
    assert client.get("/analytics?unit=nowhere").status_code == 404
