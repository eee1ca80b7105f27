"""The analytics pages and API as each role uses them: figures by window,
staff, service item, channel, content tag and hour; trends by day, week and
month; where 差评 concentrate; 主动评价率; all from the pre-aggregated
figures, scoped to a unit manager's subtree, answers valid against the
OpenAPI document."""

from __future__ import annotations

import io

import openpyxl
import pytest

from sync_server import db, org
from tests.harness.records import add_evaluation
from tests.test_access import build_world, client_as
from tests.test_openapi import problems


def world(app):
    """build_world (ws:1 差评 at A01 in 闻韶, xg:1 at B01 in 雪宫) and more:
    staff, items, tags, several days and hours, a voided and a repeated rating."""
    from sqlalchemy import delete

    from sync_server.schema_channels import service_events

    engine = build_world(app)
    with engine.begin() as conn:
        conn.execute(delete(service_events))  # the events here are this file's own
        org.add(conn, "staff", "P01", "张三", "hall-ws")
        org.add(conn, "items", "I01", "营业执照", "hall-ws")
    add = add_evaluation
    add(engine, "kp-01:10", 5, "2026-11-02T01:00:00Z", window_id="A01", staff_id="P01", item_code="I01")  # fmt: skip
    add(engine, "kp-01:11", 4, "2026-11-02T16:30:00Z", window_id="A01", staff_id="P01", item_code="I01")  # fmt: skip
    add(engine, "kp-01:12", 2, "2026-11-10T02:00:00Z", window_id="A01", item_code="I01", tags='["201"]')  # fmt: skip
    add(engine, "kp-01:13", 1, "2026-11-10T02:10:00Z", window_id="A01", tags='["101","102"]', excluded=True)  # fmt: skip
    add(engine, "kp-01:14", 5, "2026-11-10T02:20:00Z", window_id="A01", repeat_of="kp-01:10")
    add(engine, "web/1", 3, "2026-11-10T03:00:00Z", channel="web", client="pc", org_id="370305001")
    return engine


@pytest.fixture
def app(engine_app):
    world(engine_app)
    return engine_app


def get(app, role, path, status=200):
    client = client_as(app, role)
    response = client.get(path)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    return response


def api(app, role, path, schema):
    """An API answer, checked against the OpenAPI document."""
    client = client_as(app, role)
    document = client.get("/api/v1/openapi.json").get_json()
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert problems(body, {"$ref": f"#/components/schemas/{schema}"}, document) == []
    return body


def by_key(rows):
    return {row["key"]: row for row in rows}


def test_the_supervisor_sees_figures_by_window_with_the_active_rating_rate(app):
    figures = api(app, "supervisor", "/api/v1/analytics/window?unit=370305", "ViewFigures")
    rows = by_key(figures["rows"])
    # A01: kp-01:10 (5), :11 (4), :12 (2) and ws:1 (1); :13 voided, :14 a repeat
    assert rows["A01"]["by_stars"] == {"1": 1, "2": 1, "3": 0, "4": 1, "5": 1}
    assert (rows["A01"]["name"], rows["A01"]["valid"], rows["A01"]["bad"], rows["A01"]["good_rate"]) == ("闻韶一号窗", 4, 2, 0.5)  # fmt: skip
    assert rows["B01"]["valid"] == 1 and rows["A01"]["handled"] == 0
    assert rows["A01"]["active_rate"] is None  # no service events: no rate, not 0%
    assert figures["total"]["valid"] == 5


def test_staff_items_tags_and_channels(app):
    staff = api(app, "admin", "/api/v1/analytics/staff", "ViewFigures")
    assert [(r["key"], r["name"], r["valid"]) for r in staff["rows"]] == [("P01", "张三", 2)]
    items = api(app, "admin", "/api/v1/analytics/item", "ViewFigures")
    assert [(r["key"], r["name"], r["valid"], r["bad"]) for r in items["rows"]] == [("I01", "营业执照", 3, 1)]  # fmt: skip
    tags = api(app, "admin", "/api/v1/analytics/tag", "ViewFigures")
    assert [(r["key"], r["valid"]) for r in tags["rows"]] == [("201", 1)]  # 101, 102: voided
    channels = api(app, "admin", "/api/v1/analytics/channel", "ViewFigures")
    assert {r["key"]: r["valid"] for r in channels["rows"]} == {"keypad": 5, "web": 1}
    assert by_key(channels["rows"])["web"]["name"] == "政务服务网"
    web = api(app, "admin", "/api/v1/analytics/channel?channel=web", "ViewFigures")
    assert [r["key"] for r in web["rows"]] == ["web"]


def test_trends_by_day_week_and_month_and_the_hours(app):
    days = api(app, "admin", "/api/v1/analytics/trend?since=2026-11-01&until=2026-11-20", "ViewFigures")  # fmt: skip
    # kp-01:11 at 16:30 UTC on the 2nd is 00:30 on the 3rd in Shanghai
    assert [(r["key"], r["valid"]) for r in days["rows"]] == [("2026-11-02", 1), ("2026-11-03", 1), ("2026-11-10", 2)]  # fmt: skip
    weeks = api(app, "admin", "/api/v1/analytics/trend?grain=week", "ViewFigures")
    assert [(r["key"], r["valid"]) for r in weeks["rows"]] == [("2026-W45", 2), ("2026-W46", 2), ("2026-W48", 2)]  # fmt: skip
    months = api(app, "admin", "/api/v1/analytics/trend?grain=month", "ViewFigures")
    assert [(r["key"], r["valid"], r["bad"]) for r in months["rows"]] == [("2026-11", 6, 3)]
    hours = api(app, "admin", "/api/v1/analytics/hour", "ViewFigures")
    assert len(hours["rows"]) == 24
    assert {r["key"]: r["valid"] for r in hours["rows"] if r["valid"]} == {"00": 1, "09": 1, "10": 1, "11": 1, "16": 2}  # fmt: skip


def test_where_bad_ratings_concentrate(app):
    bad = api(app, "supervisor", "/api/v1/analytics/bad", "BadConcentration")
    assert [(r["key"], r["bad"]) for r in bad["units"]] == [("hall-ws", 2), ("hall-xg", 1)]
    assert [(r["key"], r["bad"]) for r in bad["windows"]] == [("A01", 2), ("B01", 1)]
    assert [(r["key"], r["bad"]) for r in bad["tags"]] == [("201", 1)]
    assert {r["key"]: r["bad"] for r in bad["hours"] if r["bad"]} == {"10": 1, "16": 2}


def test_a_unit_manager_sees_only_their_subtree_and_never_another(app):
    windows = api(app, "unit_manager", "/api/v1/analytics/window", "ViewFigures")
    assert windows["root"] == {"id": "370305001", "name": "闻韶街道"}
    assert [r["key"] for r in windows["rows"]] == ["A01"]
    bad = api(app, "unit_manager", "/api/v1/analytics/bad", "BadConcentration")
    assert [r["key"] for r in bad["windows"]] == ["A01"]
    refused = get(app, "unit_manager", "/api/v1/analytics/window?unit=370305002", 404)
    assert set(refused.get_json()) == {"error"} and "雪宫" not in refused.get_data(as_text=True)
    other = client_as(app, "other_manager").get("/api/v1/analytics/staff").get_json()
    assert other["rows"] == []  # 张三 works in 闻韶
    page = get(app, "other_manager", "/analytics/window").get_data(as_text=True)
    assert "闻韶一号窗" not in page and "雪宫一号窗" in page


def test_the_active_rating_rate_comes_from_the_service_events(app):
    from sync_server.schema_channels import service_events

    engine = app.extensions["hcp_engine"]
    with engine.begin() as conn:
        for n, rating in enumerate(["kp-01:10", None, None, "kp-01:11"]):
            values = dict(
                case_no=f"C{n}", service_no="1", item_code="I01", unit_id="hall-ws",
                window_id="A01", staff_id="P01", handled_at="2026-11-02T01:00:00Z",
                registered_at=db.utc_now(), source="api", rating_id=rating,
            )  # fmt: skip
            for column in service_events.columns:  # what the channels feature requires else
                if not (column.nullable or column.primary_key or column.name in values):
                    if column.default is None and column.server_default is None:
                        values[column.name] = f"x{n}"
            conn.execute(service_events.insert().values(**values))
    staff = api(app, "supervisor", "/api/v1/analytics/staff", "ViewFigures")
    assert (staff["rows"][0]["handled"], staff["rows"][0]["active_rate"]) == (4, 0.5)
    page = get(app, "supervisor", "/analytics?unit=370305001").get_data(as_text=True)
    assert "主动评价率" in page and "50.0%" in page


def test_bad_filters_get_a_clear_answer(app):
    client = client_as(app, "admin")
    cases = {
        "/api/v1/analytics/window?since=2026-02-30": "since: not a calendar date",
        "/api/v1/analytics/window?since=2026-11-02T00:00:00Z": "since: must be YYYY-MM-DD (a day in Asia/Shanghai)",  # noqa: E501
        "/api/v1/analytics/window?channel=fax": "channel: must be one of keypad, kiosk, qr_window, qr_case, web, sms, hotline, paper",  # noqa: E501
        "/api/v1/analytics/trend?grain=year": "grain: must be one of day, week, month",
        "/api/v1/analytics/trend?until=2026-01-01&since=2026-02-01": "until: is before since",
        "/api/v1/analytics/tag?unit=a%00b": "unit: contains a control character",
        "/api/v1/analytics/tag?colour=red": "colour: unknown parameter",
    }
    for path, message in cases.items():
        response = client.get(path)
        assert (response.status_code, response.get_json()) == (400, {"error": message}), path
    assert client.get("/api/v1/analytics/colours").status_code == 404
    assert client.get("/api/v1/analytics/tag?unit=<script>").status_code == 404  # no such unit
    page = client.get("/analytics/window?unit=%27%20OR%201=1--")
    assert page.status_code == 404  # no such unit


@pytest.mark.parametrize("view", ["window", "staff", "item", "channel", "tag", "hour", "trend", "bad"])  # fmt: skip
def test_each_view_page_draws_its_chart_in_chinese(app, view):
    page = get(app, "admin", f"/analytics/{view}").get_data(as_text=True)
    assert 'role="img"' in page and "<desc id=" in page
    assert "日期按北京时间计" in page and "导出" in page


def test_each_view_exports_to_excel_in_the_office_layout(app):
    client = client_as(app, "supervisor")
    response = client.get("/analytics/export?view=window&format=xlsx&unit=370305001")
    assert response.headers["Content-Disposition"] == "attachment; filename=hcp-figures-window.xlsx"  # fmt: skip
    rows = [list(r) for r in openpyxl.load_workbook(io.BytesIO(response.data)).active.iter_rows(values_only=True)]  # fmt: skip
    assert rows[0][0] == "分窗口统计"
    assert rows[1][:2] == ["统计时段", "— — —"]
    assert rows[2][:2] == ["单位", "闻韶街道 (370305001)"]
    assert rows[4] == ["名称", "编码", "非常满意", "满意", "基本满意", "不满意", "非常不满意", "有效评价数", "好评", "差评", "好评率", "办理服务数", "主动评价率"]  # fmt: skip
    assert rows[5] == ["闻韶一号窗", "A01", 1, 1, 0, 1, 1, 4, 2, 2, "50.0%", 0, None]
    assert rows[-1] == ["合计", None, 1, 1, 0, 1, 1, 4, 2, 2, "50.0%", None, None]
    csv_text = client.get("/analytics/export?view=bad&format=csv").get_data(as_text=True)
    assert csv_text.startswith("\ufeff差评集中分析")
    assert "闻韶一号窗,A01,1,1,0,1,1,4,2,2,50.0%" in csv_text


# the lines tests/test_openapi.py's CALLS needs for these routes, checked here meanwhile
OPENAPI_CALLS = [
    ("supervisor", "get", "/api/v1/analytics/window?since=2026-01-01", None, 200),
    ("admin", "get", "/api/v1/analytics/trend?grain=year", None, 400),
    ("unit_manager", "get", "/api/v1/analytics/window?unit=370305002", None, 404),
    ("supervisor", "get", "/api/v1/analytics/bad", None, 200),
    ("other_manager", "get", "/api/v1/analytics/bad?unit=370305001", None, 404),
]


@pytest.mark.parametrize(("role", "method", "path", "body", "status"), OPENAPI_CALLS)
def test_answers_and_errors_match_the_openapi_document(app, role, method, path, body, status):
    from tests.test_openapi import _template_of

    client = client_as(app, role)
    document = client.get("/api/v1/openapi.json").get_json()
    response = client.open(path, method=method.upper(), json=body)
    assert response.status_code == status, response.get_data(as_text=True)
    operation = document["paths"][_template_of(document, path)][method]
    schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    assert problems(response.get_json(), schema, document) == []


def test_a_chart_escapes_what_came_from_data():
    from sync_server import charts

    svg = str(charts.bars("窗口 <x>", [("<script>alert(1)</script>", 3, 1)], "差评"))
    assert "<script>" not in svg and "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert svg.count("<desc ") == 1 and svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; 差评: 1</title>" in svg
    line = str(charts.lines("趋势", ["2026-11", "<b>"], [("有效", [3, None]), ("差评", [1, 2])]))
    assert "<b>" not in line and line.count("<circle") == 3 and line.count("<polyline") == 1
