"""Every analytics view can be read for one channel: windows, staff, service
items, content tags, hours, the trend and where 差评 concentrate, on the
pages (a channel selector that the links between views keep), in the API
and in the exports. 主动评价率 is not shown for one channel (service events
have none)."""

from __future__ import annotations

import io
import re

import openpyxl
import pytest

from sync_server import org
from tests.harness.records import add_evaluation
from tests.test_access import build_world, client_as
from tests.test_analytics import api

AT = "2026-11-12T02:00:00Z"  # 10:00 in Shanghai


@pytest.fixture
def app(engine_app):
    engine = build_world(engine_app)  # ws:1 (1) at A01, xg:1 (2) at B01: keypad, 2026-11-26
    with engine.begin() as conn:
        org.add(conn, "staff", "P01", "张三", "hall-ws")
    add = add_evaluation
    add(engine, "kp-01:20", 5, AT, window_id="A01", staff_id="P01", item_code="I01", tags='["501"]')
    add(engine, "qrw/1", 1, AT, channel="qr_window", window_id="A01", staff_id="P01",
        item_code="I01", tags='["101"]')  # fmt: skip
    add(engine, "qrw/2", 4, "2026-11-12T07:00:00Z", channel="qr_window", window_id="B01")
    return engine_app


def keyed(rows):
    return {row["key"]: (row["valid"], row["bad"]) for row in rows if row["valid"]}


def test_each_view_narrows_to_one_channel(app):
    def view(name, channel="qr_window"):
        return api(app, "supervisor", f"/api/v1/analytics/{name}?channel={channel}", "ViewFigures")

    windows = view("window")
    assert keyed(windows["rows"]) == {"A01": (1, 1), "B01": (1, 0)}
    assert windows["channel"] == "qr_window" and windows["total"]["valid"] == 2
    assert all(row["handled"] is None and row["active_rate"] is None for row in windows["rows"])
    assert keyed(view("window", "keypad")["rows"]) == {"A01": (2, 1), "B01": (1, 1)}
    assert keyed(view("staff")["rows"]) == {"P01": (1, 1)}
    assert keyed(view("item")["rows"]) == {"I01": (1, 1)}
    assert keyed(view("tag")["rows"]) == {"101": (1, 1)}
    assert keyed(view("tag", "keypad")["rows"]) == {"501": (1, 0)}
    assert keyed(view("hour")["rows"]) == {"10": (1, 1), "15": (1, 0)}
    assert keyed(view("trend")["rows"]) == {"2026-11-12": (2, 1)}
    assert view("window", "web")["rows"] == []
    bad = api(app, "supervisor", "/api/v1/analytics/bad?channel=qr_window", "BadConcentration")
    assert keyed(bad["windows"]) == {"A01": (1, 1)}
    assert keyed(bad["tags"]) == {"101": (1, 1)}
    units = client_as(app, "supervisor").get("/api/v1/analytics/units?unit=370305001&channel=qr_window")  # fmt: skip
    assert units.get_json()["total"]["valid"] == 1


def test_the_pages_offer_the_channel_everywhere_and_keep_it_between_views(app):
    client = client_as(app, "supervisor")
    for path in ("/analytics", "/analytics/window", "/analytics/tag", "/analytics/bad"):
        html = client.get(path + "?channel=qr_window").get_data(as_text=True)
        assert '<option value="qr_window" selected>窗口二维码</option>' in html, path
        nav = re.search(r'<nav class="subnav".*?</nav>', html, re.S).group(0)
        assert nav.count("channel=qr_window") == 9, path  # figures by unit and the 8 views
    html = client.get("/analytics/window?channel=qr_window").get_data(as_text=True)
    assert "主动评价率" not in html
    assert "主动评价率" in client.get("/analytics/window").get_data(as_text=True)


def test_the_export_of_one_channel_says_which(app):
    client = client_as(app, "supervisor")
    response = client.get("/analytics/export?view=window&channel=qr_window&format=xlsx")
    assert response.status_code == 200
    workbook = openpyxl.load_workbook(io.BytesIO(response.data))
    rows = [list(row) for row in workbook.active.iter_rows(values_only=True)]
    assert rows[3][:2] == ["评价渠道", "窗口二维码"]
    header = rows[5]
    assert header[:2] == ["名称", "编码"] and "主动评价率" not in header
    body = {row[1]: row for row in rows[6:8]}
    assert set(body) == {"A01", "B01"}
    assert rows[-1][0] == "合计"
