"""One meaning of a day everywhere a person filters: a local day in
Asia/Shanghai. A rating at 23:30 local time (15:30 UTC) belongs to its local
day in the evaluations list, its summary, its export and the analytics
alike; a UTC instant still filters the list exactly; the API document says
so precisely."""

from __future__ import annotations

import io
import re

import openpyxl
import pytest

from tests.harness.records import add_evaluation
from tests.test_access import build_world, client_as

LATE = "2026-11-26T15:30:00Z"  # 23:30 on the 26th in Shanghai
EARLY = "2026-11-26T16:30:00Z"  # 00:30 on the 27th in Shanghai


@pytest.fixture
def app(engine_app):
    engine = build_world(engine_app)  # ws:1 (1) and xg:1 (2) at 16:30 local on the 26th
    add_evaluation(engine, "late:1", 5, LATE, window_id="A01", device_id="late", seq=1)
    add_evaluation(engine, "early:1", 4, EARLY, window_id="A01", device_id="early", seq=1)
    return engine_app


def listed(client, query):
    response = client.get("/api/v1/evaluations?" + query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return sorted(item["id"] for item in response.get_json()["items"])


def test_a_rating_at_half_past_eleven_belongs_to_its_local_day_in_every_filter(app):
    client = client_as(app, "supervisor")
    the_26th = ["late:1", "ws:1", "xg:1"]
    assert listed(client, "since=2026-11-26&until=2026-11-26") == the_26th
    assert listed(client, "since=2026-11-27") == ["early:1"]
    assert listed(client, "until=2026-11-26") == the_26th
    # a UTC instant is still an instant
    assert listed(client, "since=2026-11-26T16:00:00Z") == ["early:1"]
    assert listed(client, "until=2026-11-26T15:30:00Z") == the_26th
    summary = client.get("/api/v1/evaluations/summary?since=2026-11-26&until=2026-11-26")
    assert summary.get_json()["total"] == 3
    # the analytics count the same ratings for the same day
    day = client.get("/api/v1/analytics/units?since=2026-11-26&until=2026-11-26").get_json()
    assert day["total"]["valid"] == 3
    assert day["total"]["by_stars"] == {"1": 1, "2": 1, "3": 0, "4": 0, "5": 1}
    hours = client.get("/api/v1/analytics/hour?since=2026-11-26&until=2026-11-26").get_json()
    assert {r["key"]: r["valid"] for r in hours["rows"] if r["valid"]} == {"16": 2, "23": 1}
    next_day = client.get("/api/v1/analytics/units?since=2026-11-27").get_json()
    assert next_day["total"]["valid"] == 1


def test_the_evaluations_page_filters_local_days_and_says_so(app):
    page = client_as(app, "supervisor").get("/evaluations?since=2026-11-27&until=2026-11-27")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "起始日期" in html and "截止日期" in html and "UTC date" not in html
    assert "日期均为北京时间（Asia/Shanghai）的自然日，含起止两日" in html
    assert "共 1 条评价" in html
    assert "/evaluations/early:1" in html and "/evaluations/late:1" not in html


def test_the_export_links_carry_the_lists_filters_and_give_the_same_ratings(app):
    client = client_as(app, "supervisor")
    page = client.get("/evaluations?since=2026-11-26&until=2026-11-26&stars=5&stars=1&page=1")
    html = page.get_data(as_text=True)
    links = dict(
        (fmt, href.replace("&amp;", "&"))
        for href, fmt in re.findall(r'href="(/evaluations/export\?[^"]*format=(xlsx|csv))"', html)
    )
    assert links["xlsx"] == (
        "/evaluations/export?since=2026-11-26&until=2026-11-26&stars=5&stars=1&format=xlsx"
    )
    assert "page=" not in links["csv"]
    assert 'id="evaluations-export">导出本列表的评价记录' in html
    workbook = openpyxl.load_workbook(io.BytesIO(client.get(links["xlsx"]).data))
    rows = [list(row) for row in workbook.active.iter_rows(values_only=True)]
    assert rows[0][0] == "评价记录"
    assert rows[1][:2] == ["统计时段", "2026-11-26 — 2026-11-26"]
    assert sorted(row[0] for row in rows[5:7]) == ["late:1", "ws:1"]  # levels 5 and 1 of the 26th
    assert not any(rows[7])  # the blank row before the totals
    assert rows[8][:2] == ["合计", 2]
    text = client.get(links["csv"]).data.decode("utf-8-sig")
    assert "late:1" in text and "ws:1" in text and "xg:1" not in text and "early:1" not in text


def test_a_bad_day_in_the_list_filter_is_refused_on_the_page(app):
    page = client_as(app, "supervisor").get("/evaluations?since=2026-02-30")
    assert page.status_code == 400
    assert "since: not a calendar date" in page.get_data(as_text=True)


def test_the_api_document_says_what_a_day_is(app):
    client = client_as(app, "supervisor")
    document = client.get("/api/v1/openapi.json").get_json()

    def described(path, name):
        params = document["paths"][path]["get"]["parameters"]
        return next(p["description"] for p in params if p["name"] == name)

    for name in ("since", "until"):
        analytics = described("/api/v1/analytics/units", name)
        assert analytics.startswith("YYYY-MM-DD only: a local day in Asia/Shanghai")
        assert "YYYY-MM-DDTHH:MM:SSZ" not in analytics
        for path in ("/api/v1/evaluations", "/api/v1/evaluations/summary"):
            text = described(path, name)
            assert text.startswith("YYYY-MM-DD: a local day in Asia/Shanghai")
            assert "or YYYY-MM-DDTHH:MM:SSZ: a UTC instant" in text
    refused = client.get("/api/v1/analytics/units?since=2026-11-26T16:00:00Z")
    assert (refused.status_code, refused.get_json()) == (
        400,
        {"error": "since: must be YYYY-MM-DD (a day in Asia/Shanghai)"},
    )
