"""Rankings and 通报 on a hand-built October 2026, on both databases.

The world (local days, Asia/Shanghai):

    window A01 / staff 1001 / item I-1 in hall-ws (闻韶街道)
      October: 5 5 4 1                    -> valid 4, 好评率 3/4 = 0.75, 差评 1
      September: 1
    window B01 / staff 2001 / item I-1 in hall-xg (雪宫街道)
      October: 5 5 5 2, and a voided 1 and a repeat 1 that count nowhere
                                          -> valid 4, 0.75, 差评 1 (tied with A01)
      September: 5
    window C01 / staff 3001 / item I-2 in hall-qd (齐都镇)
      October: 5 3 2 1 and a 5 at 00:30 on 1 October (16:30Z on 30 September)
                                          -> valid 5, 3/5 = 0.6, 差评 2
      1 November 00:30 (16:30Z on 31 October): a 1, not October's
      September: 2

Cases (now: 2 November):
    A01: the October 1 due 8 Oct, rectified 6 Oct (on time), closed 8 Oct, fed
         back, visited;
         the September 1 due 3 Oct, still open (overdue)
                          -> on time 1/2 = 0.5, return visits 1/1 = 1.0
    B01: the 2 due 10 Oct, rectified 11 Oct (late), closed 12 Oct, fed back,
         not visited;
         the voided 1 due 9 Oct, closed on time: counts nowhere
                          -> on time 0/1 = 0.0, return visits 0/1 = 0.0
    C01: the 2 due 20 Oct, rectified 17 Oct, closed 19 Oct, fed back, visited;
         the 1 due 5 Nov, open (not due in October)
                          -> on time 1/1 = 1.0, return visits 1/1 = 1.0
Service events handled in October: A01 4 (3 rated), B01 2 (2), C01 5 (2)
                          -> 主动评价率 0.75, 1.0, 0.4
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re

import openpyxl
import pytest
from sqlalchemy import String, select

from sync_server import db, deadlines, org, rankings_cli, rankings_data, workdays
from sync_server.schema_cases import cases
from sync_server.schema_channels import service_events
from sync_server.schema_rankings import ranking_snapshots
from tests.harness.collector import CSRF_FIELD, AuthActions, _password_hash
from tests.harness.records import add_evaluation

NOW = "2026-11-02T02:00:00Z"


def _case(conn, record_id, unit_id, **fields):
    """Give the case of a rating the given state (made by the cases feature
    when it made one, else inserted here)."""
    row = conn.execute(select(cases.c.id).where(cases.c.record_id == record_id)).first()
    if row is not None:
        conn.execute(cases.update().where(cases.c.id == row.id).values(unit_id=unit_id, **fields))
        return
    ev = conn.execute(select(db.evaluations).where(db.evaluations.c.id == record_id)).one()
    conn.execute(
        cases.insert().values(
            record_id=record_id,
            unit_id=unit_id,
            assigned_by="window",
            state=fields.pop("state", "open"),
            stars=ev.stars,
            effective_at=ev.effective_at,
            window_id=ev.window_id,
            staff_id=ev.staff_id,
            item_code=ev.item_code,
            created_at=db.utc_now(),
            updated_at=db.utc_now(),
            **fields,
        )
    )


def _events(conn, window, unit, staff, item, handled, rated):
    for n in range(handled):
        conn.execute(
            service_events.insert().values(
                case_no=f"{window}-{n}",
                service_no="1",
                item_code=item,
                unit_id=unit,
                window_id=window,
                staff_id=staff,
                handled_at=f"2026-10-{10 + n:02d}T02:00:00Z",
                registered_at=db.utc_now(),
                source="api",
                rating_id=f"{window}-rated-{n}" if n < rated else None,
            )
        )


def build(engine):
    org.seed(engine)
    with engine.begin() as conn:
        for hall, name, parent, window, staff in (
            ("hall-ws", "闻韶街道便民服务中心", "370305001", "A01", "1001"),
            ("hall-xg", "雪宫街道便民服务中心", "370305002", "B01", "2001"),
            ("hall-qd", "齐都镇便民服务中心", "370305100", "C01", "3001"),
        ):
            org.add(conn, "units", hall, name, parent, kind="hall")
            org.add(conn, "windows", window, f"{name}一号窗", hall)
            org.add(conn, "staff", staff, f"工作人员{staff}", hall)
        org.add(conn, "items", "I-1", "营业执照办理", "370305")
        org.add(conn, "items", "I-2", "社保卡办理", "370305")

    def rate(record_id, stars, at, window, staff, item, **extra):
        add_evaluation(
            engine, record_id, stars, rated_at=at, window_id=window, staff_id=staff,
            item_code=item, **extra,
        )  # fmt: skip

    for n, stars in enumerate((5, 5, 4, 1), start=1):
        rate(f"ws:{n}", stars, f"2026-10-0{n + 1}T02:00:00Z", "A01", "1001", "I-1")
    rate("ws:0", 1, "2026-09-20T02:00:00Z", "A01", "1001", "I-1")
    for n, stars in enumerate((5, 5, 5, 2), start=1):
        rate(f"xg:{n}", stars, f"2026-10-0{n + 1}T02:00:00Z", "B01", "2001", "I-1")
    rate("xg:5", 1, "2026-10-06T02:00:00Z", "B01", "2001", "I-1", excluded=True)
    rate("xg:6", 1, "2026-10-07T02:00:00Z", "B01", "2001", "I-1", repeat_of="xg:1")
    rate("xg:0", 5, "2026-09-20T02:00:00Z", "B01", "2001", "I-1")
    for n, stars in enumerate((5, 3, 2, 1), start=1):
        rate(f"qd:{n}", stars, f"2026-10-1{n}T02:00:00Z", "C01", "3001", "I-2")
    rate("qd:5", 5, "2026-09-30T16:30:00Z", "C01", "3001", "I-2")
    rate("qd:6", 1, "2026-10-31T16:30:00Z", "C01", "3001", "I-2")
    rate("qd:0", 2, "2026-09-20T02:00:00Z", "C01", "3001", "I-2")

    with engine.begin() as conn:
        _case(conn, "ws:4", "hall-ws", state="closed", due_at="2026-10-08T15:59:59Z",
              rectified_at="2026-10-06T02:00:00.000000Z", closed_at="2026-10-08T02:00:00.000000Z", fed_back_at="2026-10-07T02:00:00.000000Z",
              visited_at="2026-10-08T01:00:00.000000Z")  # fmt: skip
        _case(conn, "ws:0", "hall-ws", state="classified", due_at="2026-10-03T15:59:59Z")
        _case(conn, "xg:4", "hall-xg", state="closed", due_at="2026-10-10T15:59:59Z",
              rectified_at="2026-10-11T00:00:00.000000Z", closed_at="2026-10-12T01:00:00.000000Z", fed_back_at="2026-10-11T01:00:00.000000Z")  # fmt: skip
        _case(conn, "xg:5", "hall-xg", state="voided", appeal_state="mistaken",
              due_at="2026-10-09T15:59:59Z", rectified_at="2026-10-07T01:00:00.000000Z",
              closed_at="2026-10-08T01:00:00.000000Z",
              fed_back_at="2026-10-08T00:00:00.000000Z", visited_at="2026-10-08T00:30:00.000000Z")  # fmt: skip
        _case(conn, "qd:3", "hall-qd", state="closed", due_at="2026-10-20T15:59:59Z",
              rectified_at="2026-10-17T01:00:00.000000Z", closed_at="2026-10-19T01:00:00.000000Z", fed_back_at="2026-10-18T01:00:00.000000Z",
              visited_at="2026-10-19T00:30:00.000000Z")  # fmt: skip
        _case(conn, "qd:4", "hall-qd", state="classified", due_at="2026-11-05T15:59:59Z")
        _events(conn, "A01", "hall-ws", "1001", "I-1", 4, 3)
        _events(conn, "B01", "hall-xg", "2001", "I-1", 2, 2)
        _events(conn, "C01", "hall-qd", "3001", "I-2", 5, 2)
    return engine


@pytest.fixture
def world(engine):
    return build(engine)


def _figures(row):
    keys = ("valid", "bad", "good_rate", "on_time_rate", "visit_rate", "active_rate")
    return tuple(row[k] for k in keys)


def test_october_by_unit_window_staff_town_and_item(world):
    with world.connect() as conn:
        data = rankings_data.figures_for(conn, "2026-10", NOW)
    assert (data["first_day"], data["last_day"]) == ("2026-10-01", "2026-10-31")
    units = data["dimensions"]["unit"]
    assert [(r["id"], _figures(r), r["ranks"]) for r in units] == [
        ("hall-ws", (4, 1, 0.75, 0.5, 1.0, 0.75),
         {"good_rate": 1, "bad": 1, "on_time_rate": 2, "visit_rate": 1, "active_rate": 2}),
        ("hall-xg", (4, 1, 0.75, 0.0, 0.0, 1.0),
         {"good_rate": 1, "bad": 1, "on_time_rate": 3, "visit_rate": 3, "active_rate": 1}),
        ("hall-qd", (5, 2, 0.6, 1.0, 1.0, 0.4),
         {"good_rate": 3, "bad": 3, "on_time_rate": 1, "visit_rate": 1, "active_rate": 3}),
    ]  # fmt: skip
    for dimension, ids in (
        ("window", ["A01", "B01", "C01"]),
        ("staff", ["1001", "2001", "3001"]),
        ("town", ["370305001", "370305002", "370305100"]),
    ):
        rows = data["dimensions"][dimension]
        assert [r["id"] for r in rows] == ids
        assert [_figures(r) for r in rows] == [_figures(u) for u in units]
        assert [r["ranks"] for r in rows] == [u["ranks"] for u in units]
    assert data["dimensions"]["town"][2]["name"] == "齐都镇"
    assert data["dimensions"]["staff"][0]["name"] == "工作人员1001"
    items = data["dimensions"]["item"]
    # I-1: A01 and B01 together: 8 valid, 6 good; cases due 3, on time 1; visits 1 of 2;
    # events 6, rated 5
    assert [(r["id"], _figures(r)) for r in items] == [
        ("I-1", (8, 2, 0.75, round(1 / 3, 4), 0.5, round(5 / 6, 4))),
        ("I-2", (5, 2, 0.6, 1.0, 1.0, 0.4)),
    ]


def test_the_month_snapshot_praises_lists_the_bottom_and_the_consecutive(world):
    with world.begin() as conn:
        deadlines.set_setting(conn, "praise_places", 1)
        deadlines.set_setting(conn, "bottom_places", 1)
        data = rankings_data.compute(conn, "2026-10", actor="admin", now_utc=NOW)
    brief = {"id": "hall-qd", "name": "齐都镇便民服务中心", "rank": 3, "good_rate": 0.6, "valid": 5}
    assert data["notices"]["unit"] == {
        "praised": [
            {"id": "hall-ws", "name": "闻韶街道便民服务中心", "rank": 1, "good_rate": 0.75, "valid": 4},
            {"id": "hall-xg", "name": "雪宫街道便民服务中心", "rank": 1, "good_rate": 0.75, "valid": 4},
        ],
        "bottom": [brief],
    }  # fmt: skip
    # September: 雪宫 1.0 first, 闻韶 and 齐都 tied last at 0.0: both near the bottom;
    # 齐都 was near the bottom in September and October
    assert data["consecutive"]["unit"] == [brief]
    assert [r["id"] for r in data["consecutive"]["town"]] == ["370305100"]
    with world.connect() as conn:
        stored = rankings_data.snapshot(conn, "2026-10")
        assert stored["computed_by"] == "admin" and stored["automatic"] is False
        assert stored["dimensions"] == json.loads(json.dumps(data["dimensions"]))
        assert [s["period"] for s in rankings_data.snapshots(conn)] == ["2026-10"]


def test_three_months_running_finds_nobody_when_august_is_empty(world):
    with world.begin() as conn:
        deadlines.set_setting(conn, "praise_places", 1)
        deadlines.set_setting(conn, "bottom_places", 1)
        deadlines.set_setting(conn, "bottom_periods", 3)
        data = rankings_data.compute(conn, "2026-10", now_utc=NOW)
    assert data["consecutive"] == {"unit": [], "town": []}


def test_a_snapshot_does_not_change_when_the_data_does(world):
    with world.begin() as conn:
        rankings_data.compute(conn, "2026-10", now_utc=NOW)
    add_evaluation(world, "ws:9", 1, rated_at="2026-10-20T02:00:00Z", window_id="A01")
    with world.connect() as conn:
        stored = rankings_data.snapshot(conn, "2026-10")["dimensions"]["unit"]
        live = rankings_data.figures_for(conn, "2026-10", NOW)["dimensions"]["unit"]
    assert [(r["id"], r["valid"]) for r in stored] == [
        ("hall-ws", 4),
        ("hall-xg", 4),
        ("hall-qd", 5),
    ]
    assert [(r["id"], r["valid"]) for r in live] == [("hall-xg", 4), ("hall-qd", 5), ("hall-ws", 5)]


def test_the_month_end_hook_computes_the_month_once_after_it_ends(world):
    # 23:59 on 31 October in Beijing: September is the month that is over
    assert rankings_data.tick(world, "2026-10-31T15:59:00Z") == "2026-09"
    assert rankings_data.tick(world, "2026-10-31T15:59:30Z") is None
    # 00:00 on 1 November in Beijing
    assert rankings_data.tick(world, "2026-10-31T16:00:00Z") == "2026-10"
    assert rankings_data.tick(world, "2026-11-02T00:00:00Z") is None
    with world.connect() as conn:
        rows = conn.execute(
            select(ranking_snapshots.c.period, ranking_snapshots.c.automatic).order_by(
                ranking_snapshots.c.period
            )
        ).all()
    assert [tuple(r) for r in rows] == [("2026-09", True), ("2026-10", True)]


def test_a_custom_period_and_bad_periods(world):
    with world.connect() as conn:
        data = rankings_data.figures_for(conn, "2026-10-01..2026-10-05", NOW)
        # A01: 5 5 4 1 on 2..5 October; B01: 5 5 5 2; C01: only the 5 of 1 October
        assert [(r["id"], r["valid"], r["good_rate"]) for r in data["dimensions"]["unit"]] == [
            ("hall-qd", 1, 1.0), ("hall-ws", 4, 0.75), ("hall-xg", 4, 0.75),
        ]  # fmt: skip
        for period, message in (
            ("2026-13", "period: no month '2026-13'"),
            ("October", "period: must be YYYY-MM, YYYY-Qn, YYYY or YYYY-MM-DD..YYYY-MM-DD"),
            ("2026-10-05..2026-10-01", "period: the last day is before the first"),
            ("2026-02-30..2026-03-01", "period: no such day in '2026-02-30..2026-03-01'"),
            ("2025-01-01..2026-01-02", "period: at most 366 days"),
        ):
            with pytest.raises(rankings_data.PeriodError) as caught:
                rankings_data.figures_for(conn, period, NOW)
            assert str(caught.value) == message


# --- the pages ----------------------------------------------------------------------

CONTACT = "13800000000"
COMMENT = "窗口人员态度差"
PASSWORD = "manager-pass-1"


@pytest.fixture
def site(engine_app):
    engine = engine_app.extensions["hcp_engine"]
    build(engine)
    add_evaluation(
        engine, "ws:7", 2, rated_at="2026-10-21T02:00:00Z", window_id="A01", staff_id="1001",
        item_code="I-1", contact=CONTACT, comment=COMMENT,
    )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            db.users.insert().values(
                username="um", password_hash=_password_hash(PASSWORD), role="unit_manager",
                unit_id="370305001", created_at=db.utc_now(),
            )
        )  # fmt: skip
    return engine_app


def _login(app, username, password=None):
    client = app.test_client()
    response = AuthActions(client).login(username, password)
    assert response.status_code == 302
    return client


def _csrf(client):
    return CSRF_FIELD.search(client.get("/login").get_data(as_text=True)).group(1)


def test_the_rankings_page_computes_stores_and_exports(site):
    client = _login(site, "admin")
    page = client.get("/rankings?period=2026-10").get_data(as_text=True)
    assert "现算，未保存" in page
    assert "齐都镇便民服务中心" in page and "通报" in page
    response = client.post(
        "/rankings/compute", data={"csrf_token": _csrf(client), "period": "2026-10"}
    )
    assert response.status_code == 302
    assert response.location == "/rankings?period=2026-10"
    page = client.get("/rankings?period=2026-10&dim=window&by=active_rate").get_data(as_text=True)
    assert "快照计算于" in page and "现算，未保存" not in page
    # this month by default, the stored one linked
    page = client.get("/rankings").get_data(as_text=True)
    assert '<a href="/rankings?period=2026-10">2026-10</a>' in page
    with site.extensions["hcp_engine"].connect() as conn:
        (entry,) = conn.execute(
            select(db.audit_log).where(db.audit_log.c.action == "rankings.compute")
        ).all()
    assert (entry.actor, entry.target) == ("admin", "period:2026-10")

    book = client.get("/rankings/export?period=2026-10&dim=unit")
    assert book.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(book.data)).active
    rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert rows[0] == ["政务服务好差评排名通报"] + [None] * 14
    assert rows[1][:3] == ["统计时段", "2026-10", "2026-10-01 — 2026-10-31"]
    assert rows[2][:3] == ["单位", "临淄区", "单位"]
    assert rows[4][:6] == ["名次", "名称", "编码", "有效评价数", "差评", "好评率"]
    # with ws:7 (a 2 on 21 October) A01 has 5 valid, 3 good: 0.6, tied with C01
    assert [r[:6] for r in rows[5:]] == [
        [1, "雪宫街道便民服务中心", "hall-xg", 4, 1, "75.0%"],
        [2, "齐都镇便民服务中心", "hall-qd", 5, 2, "60.0%"],
        [2, "闻韶街道便民服务中心", "hall-ws", 5, 2, "60.0%"],
        [None, "合计", None, 14, 5, "64.3%"],
    ]
    assert rows[5][6:] == [1, 0, "0.0%", 1, 0, "0.0%", 2, 2, "100.0%"]
    assert rows[8][6:] == [4, 2, "50.0%", 3, 2, "66.7%", 11, 7, "63.6%"]


def test_bad_periods_on_the_pages(site):
    client = _login(site, "admin")
    response = client.get("/rankings?period=2026-13")
    assert response.status_code == 400
    assert "period：没有月份 &#39;2026-13&#39;" in response.get_data(as_text=True)
    response = client.get("/rankings?period=2026-10&dim=planet")
    assert response.status_code == 400
    assert "dim：须为以下之一：unit, town, window, staff, item" in response.get_data(as_text=True)
    response = client.post("/rankings/compute", data={"csrf_token": _csrf(client), "period": "x"})
    assert response.status_code == 400
    assert "period：须为 YYYY-MM、YYYY-Qn、YYYY 或 YYYY-MM-DD..YYYY-MM-DD" in response.get_data(
        as_text=True
    )
    with site.extensions["hcp_engine"].connect() as conn:
        assert rankings_data.snapshots(conn) == []


def test_a_unit_manager_sees_every_unit_but_only_its_own_windows_and_staff(site):
    client = _login(site, "um", PASSWORD)
    units = client.get("/rankings?period=2026-10").get_data(as_text=True)
    assert "雪宫街道便民服务中心" in units and "齐都镇便民服务中心" in units
    for dim, own, other in (("window", "A01", "B01"), ("staff", "工作人员1001", "工作人员2001")):
        page = client.get(f"/rankings?period=2026-10&dim={dim}").get_data(as_text=True)
        assert own in page and other not in page
    book = client.get("/rankings/export?period=2026-10&dim=staff")
    sheet = openpyxl.load_workbook(io.BytesIO(book.data)).active
    names = [row[1].value for row in sheet.iter_rows(min_row=6)]
    assert names == ["工作人员1001", "合计"]
    assert client.post("/rankings/compute", data={"csrf_token": _csrf(client), "period": "2026-10"}).status_code == 403  # fmt: skip


def test_the_public_page_shows_figures_and_nothing_of_raters_or_staff(site):
    client = site.test_client()  # nobody logged in
    response = client.get("/public?period=2026-10")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "政务服务好差评公开" in page
    assert "齐都镇便民服务中心" in page and "齐都镇" in page
    for secret in (CONTACT, COMMENT, "工作人员", "1001", "A01", "ws:7", "一号窗", "xg:5"):
        assert secret not in page, secret
    # 齐都镇: 5 valid, 60.0%, 2 差评, on time 1/1, visits 1/1
    units = page.split('id="units"')[1]
    qd = units.split("齐都镇便民服务中心")[1].split("</section>")[0]
    figures = re.findall(r"<dd[^>]*>([^<]*)</dd>", qd)
    # valid, rate, bad, fixed at once, ledger, explained, being handled, on time, visits
    assert figures == ["5", "60.0%", "2", "0", "0", "0", "2", "100.0%", "100.0%"]
    assert client.get("/public?period=2999-01").status_code == 400
    assert client.get("/public").status_code == 200  # this month so far
    assert client.get("/public?period=<script>").status_code == 400
    assert "<script>" not in client.get("/public?period=<script>").get_data(as_text=True)


def test_the_deadline_settings_page_changes_are_audited_and_checked(site):
    client = _login(site, "admin")
    token = _csrf(client)
    page = client.get("/deadlines/settings").get_data(as_text=True)
    assert "2027年节假日安排尚未录入" in page
    form = {
        "csrf_token": token, "unit": "370305100", "immediate_days": "1",
        "immediate_basis": "working", "general_days": "5", "general_basis": "working",
        "complex_days": "15", "complex_basis": "working", "note": "临沂",
    }  # fmt: skip
    assert client.post("/deadlines/settings/rule", data=form).status_code == 302
    bad = client.post("/deadlines/settings/rule", data={**form, "general_days": "0"})
    assert bad.status_code == 400
    assert "general_days：须为 1 至 365，收到 0" in bad.get_data(as_text=True)
    lines = "2027-01-01 休 元旦\n2027-02-07 班 春节调休"
    saved = client.post("/deadlines/settings/calendar", data={"csrf_token": token, "lines": lines})
    assert saved.status_code == 302
    wrong = client.post(
        "/deadlines/settings/calendar", data={"csrf_token": token, "lines": "2027-01-04 休\n2027-13-01 休"}
    )  # fmt: skip
    assert wrong.status_code == 400
    assert "第 2 行：日期须为 YYYY-MM-DD" in wrong.get_data(as_text=True)
    values = {"csrf_token": token, "due_soon_hours": "24", "bottom_places": "2",
              "bottom_periods": "3", "praise_places": "2"}  # fmt: skip
    assert client.post("/deadlines/settings/values", data=values).status_code == 302
    page = client.get("/deadlines/settings").get_data(as_text=True)
    assert "2027年节假日安排尚未录入" not in page
    engine = site.extensions["hcp_engine"]
    with engine.connect() as conn:
        assert deadlines.due_at(conn, "hall-qd", "general", "2026-12-30T02:00:00Z") == (
            "2027-01-07T15:59:59Z"
        )
        assert deadlines.all_settings(conn)["due_soon_hours"] == 24
        actions = (
            conn.execute(select(db.audit_log.c.action).order_by(db.audit_log.c.id)).scalars().all()
        )
    assert actions == ["loop.rule", "loop.calendar", "loop.settings"]
    supervisor = _login(site, "viewer")
    assert supervisor.get("/deadlines/settings").status_code == 403
    assert supervisor.post("/deadlines/settings/values", data={**values, "csrf_token": _csrf(supervisor)}).status_code == 403  # fmt: skip


def test_the_digest_page_and_command(site, tmp_path, capsys):
    engine = site.extensions["hcp_engine"]
    now = dt.datetime.now(dt.UTC)
    soon = (now + dt.timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    later = (now + dt.timedelta(days=9)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with engine.begin() as conn:
        _case(conn, "ws:7", "hall-ws", state="classified", due_at=soon)
        _case(conn, "qd:4", "hall-qd", state="classified", due_at=later)
    client = _login(site, "um", PASSWORD)
    page = client.get("/digest").get_data(as_text=True)
    # 闻韶's subtree only: ws:0 overdue since 3 October, ws:7 due in 5 hours
    assert re.search(r'id="total-overdue">1<', page) and re.search(r'id="total-due-soon">1<', page)
    assert "齐都镇" not in page and COMMENT not in page and CONTACT not in page
    assert "2027年节假日安排尚未录入" in page
    assert client.get("/digest?unit=370305002").status_code == 404

    out = tmp_path / "digest.txt"
    url = engine.url.render_as_string(hide_password=False)
    assert _cli(["digest", "--db", url, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == out.read_text(encoding="utf-8")
    assert printed.splitlines()[:2] == [
        f"差评案件每日提醒（{rankings_data.deadlines.local_day(now.strftime('%Y-%m-%dT%H:%M:%SZ'))}）",
        "逾期 1，临近期限 1，未到期 1，未分类 2",
    ]
    assert "闻韶街道便民服务中心（hall-ws）：逾期 1，临近期限 1" in printed
    assert "  #" in printed and "  逾期  2026-10-03 23:59  A01  I-1" in printed
    assert "齐都镇" not in printed


def _cli(argv):
    """`hcp collector <argv>` through this feature's own registration."""
    import argparse

    parser = argparse.ArgumentParser(prog="hcp collector")
    rankings_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_the_rankings_command(world, capsys):
    url = world.url.render_as_string(hide_password=False)
    assert _cli(["rankings", "--db", url, "--period", "2026-10"]) == 0
    assert capsys.readouterr().out == "stored 2026-10 (3 units)\n"
    assert _cli(["rankings", "--db", url, "--period", "2026-1"]) == 1
    assert (
        capsys.readouterr().err
        == "error: --period：须为 YYYY-MM、YYYY-Qn、YYYY 或 YYYY-MM-DD..YYYY-MM-DD\n"
    )
    with world.connect() as conn:
        assert rankings_data.snapshot(conn, "2026-10")["computed_by"] == "cli"


# --- in a real browser ---------------------------------------------------------------


@pytest.fixture
def live_site(tmp_path):
    from sync_server.cli import serve_web
    from tests.harness.collector import add_users, make_app

    app = make_app(tmp_path)
    add_users(app)
    engine = app.extensions["hcp_engine"]
    build(engine)
    add_evaluation(
        engine, "ws:7", 2, rated_at="2026-10-21T02:00:00Z", window_id="A01", staff_id="1001",
        item_code="I-1", contact=CONTACT, comment=COMMENT,
    )  # fmt: skip
    server, thread = serve_web(app, "127.0.0.1", 0)
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)
    engine.dispose()


@pytest.fixture
def browser():
    """Debian's chromium through Playwright (as tests/test_web_browser.py)."""
    from tests.test_web_browser import CHROMIUM, CHROMIUM_ARGS, _need

    playwright_sync = pytest.importorskip("playwright.sync_api")
    _need(os.path.exists(CHROMIUM), f"no chromium at {CHROMIUM}")
    with playwright_sync.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched.new_page(viewport={"width": 1200, "height": 900})
        launched.close()


def test_the_public_page_on_a_phone_and_the_rankings_in_a_browser(live_site, browser):
    from playwright.sync_api import expect

    app, base = live_site
    page = browser
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(base + "/public?period=2026-10")
    expect(page.locator("h1")).to_have_text("政务服务好差评公开")
    card = page.locator("#units section", has_text="齐都镇便民服务中心")
    expect(card).to_be_visible()
    expect(card).to_contain_text("60.0%")
    # nothing wider than the phone: no sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = card.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    text = page.locator("body").inner_text()
    for secret in (CONTACT, COMMENT, "工作人员", "A01"):
        assert secret not in text

    page.set_viewport_size({"width": 1200, "height": 900})
    page.goto(base + "/login?next=/rankings?period=2026-10")
    page.fill("#username", "admin")
    page.fill("#password", "admin-pass-1")
    page.click("button[type=submit]")
    expect(page.locator("#period-facts")).to_contain_text("按当前数据现算，未保存。")
    page.select_option("select[name=dim]", "window")
    page.select_option("select[name=by]", "on_time_rate")
    page.click("form.filters button[type=submit]")
    expect(page.locator("#ranking tbody tr").first).to_contain_text("C01")
    page.click("text=保存本时段快照")
    expect(page.locator("#period-facts")).to_contain_text("快照计算于")
    expect(page.locator("#notices")).to_contain_text("齐都镇便民服务中心")
    page.emulate_media(media="print")
    expect(page.locator("header")).to_be_hidden()
    expect(page.locator("#ranking")).to_be_visible()
    page.emulate_media(media="screen")

    page.goto(base + "/deadlines/settings")
    expect(page.locator("#calendar-warning")).to_have_text("2027年节假日安排尚未录入")
    page.fill("textarea[name=lines]", "2027-01-01 休 元旦\n2027-02-06 班 春节调休")
    page.click("#calendar-form button[type=submit]")
    expect(page.locator("#calendar")).to_contain_text("2027-02-06")
    expect(page.locator("#calendar-warning")).to_have_count(0)


def _ranked(rates):
    rows = [
        {**rankings_data._blank(f"u{n}", f"单位{n}", None), "valid": 10, "good_rate": rate}
        for n, rate in enumerate(rates, start=1)
    ]
    return {"dimensions": {"unit": rankings_data.rank(rows), "town": []}}


@pytest.mark.parametrize(
    ("rates", "praised", "bottom"),
    [
        ([0.9, 0.8, 0.7], ["u1"], ["u3"]),  # three places each, but only within a half
        ([0.9], [], []),  # one unit is neither praised nor criticised
        ([0.9, 0.9, 0.9, 0.9], ["u1", "u2", "u3", "u4"], []),  # all equal: all first
        # a tie reaching into the last three places is listed whole
        ([0.9, 0.8, 0.7, 0.6, 0.5, 0.5, 0.5, 0.4], ["u1", "u2", "u3"], ["u5", "u6", "u7", "u8"]),
        ([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.3], ["u1", "u2", "u3"], ["u6", "u7", "u8"]),
        ([0.9, 0.8, 0.7, 0.6, 0.6, 0.5, 0.5, 0.5], ["u1", "u2", "u3"], ["u6", "u7", "u8"]),
    ],
)
def test_praise_and_bottom_with_ties(rates, praised, bottom):
    settings = {"praise_places": 3, "bottom_places": 3}
    found = rankings_data.notices(_ranked(rates), settings)["unit"]
    assert [r["id"] for r in found["praised"]] == praised
    assert [r["id"] for r in found["bottom"]] == bottom


def test_a_bad_rating_walked_through_the_real_workflow_counts_in_the_rankings(engine):
    """The cases feature's own case and steps, the deadline from this
    feature's rule: fixed at once (Linyi: 1 working day), on time, revisited."""
    from sync_server import cases_workflow, rankings_public
    from sync_server.cases import case_of_record

    org.seed(engine)
    with engine.begin() as conn:
        org.add(conn, "units", "hall-qd", "齐都镇便民服务中心", "370305100", kind="hall")
        org.add(conn, "windows", "C01", "齐都一号窗", "hall-qd")
        deadlines.set_rule(conn, "370305100", {
            "immediate_days": 1, "immediate_basis": "working", "general_days": 5,
            "general_basis": "working", "complex_days": 15, "complex_basis": "working",
        })  # fmt: skip
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    add_evaluation(
        engine, "live:1", 1, rated_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"), window_id="C01"
    )
    with engine.begin() as conn:
        case = case_of_record(conn, "live:1")
        assert case["unit_id"] == "hall-qd"
        for action, values in (
            ("verify", {"note": "回访核实", "reason": "等候太久"}),
            ("classify", {"note": "立行立改", "kind": "fix_now"}),
            ("rectify", {"note": "已增开窗口"}),
            ("feed_back", {"note": "已告知"}),
            ("visit", {"note": "回访", "verdict": "satisfied"}),
            ("close", {"note": "办结"}),
        ):
            cases_workflow.take_step(conn, case["id"], action, values)
        case = case_of_record(conn, "live:1")
        start = case["created_at"][:19] + "Z"
        expected_due = deadlines.end_of_local_day(
            workdays.add_working_days(deadlines.local_day(start), 1, conn)
        )
        assert case["due_at"] == expected_due
        today = deadlines.local_day(now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        period = f"{today.isoformat()}..{(today + dt.timedelta(days=40)).isoformat()}"
        (row,) = rankings_data.figures_for(conn, period)["dimensions"]["unit"]
        month = f"{today.year:04d}-{today.month:02d}"
        first, last = rankings_data.parse_period(month)[1:]
        handled = rankings_public.outcomes(conn, first.isoformat(), last.isoformat())
    assert (row["id"], row["bad"], row["cases_due"], row["cases_on_time"]) == ("hall-qd", 1, 1, 1)
    assert (row["cases_fed_back"], row["cases_visited"], row["visit_rate"]) == (1, 1, 1.0)
    assert handled == {"hall-qd": {"fix_now": 1, "ledger": 0, "explanation": 0, "pending": 0}}


def test_on_time_means_rectified_by_the_deadline_on_the_pages_and_in_the_rankings(engine):
    """Closing, feeding back and the return visit may come after the deadline:
    the rankings count what the case page and the ledger show (the same
    deadlines.on_time), not the day a case was closed."""
    from sync_server import cases_ledger
    from sync_server.cases import case_of_record

    org.seed(engine)
    with engine.begin() as conn:
        org.add(conn, "units", "hall-qd", "齐都镇便民服务中心", "370305100", kind="hall")
        org.add(conn, "windows", "C01", "齐都一号窗", "hall-qd")
    for n in range(1, 5):
        add_evaluation(engine, f"ot:{n}", 1, rated_at=f"2026-10-0{n}T02:00:00Z", window_id="C01")
    with engine.begin() as conn:
        # rectified the day before its deadline, closed two days after it
        _case(conn, "ot:1", "hall-qd", state="closed", due_at="2026-10-10T15:59:59Z",
              rectified_at="2026-10-09T02:00:00.000000Z",
              closed_at="2026-10-12T02:00:00.000000Z")  # fmt: skip
        # rectified in time, fed back, never closed; its deadline long past
        _case(conn, "ot:2", "hall-qd", state="fed_back", due_at="2026-10-11T15:59:59Z",
              rectified_at="2026-10-11T15:59:59.900000Z")  # fmt: skip
        # rectified a second late, closed the same day
        _case(conn, "ot:3", "hall-qd", state="closed", due_at="2026-10-12T15:59:59Z",
              rectified_at="2026-10-12T16:00:00.000000Z",
              closed_at="2026-10-12T17:00:00.000000Z")  # fmt: skip
        # never rectified
        _case(conn, "ot:4", "hall-qd", state="classified", due_at="2026-10-14T15:59:59Z")
        verdicts = [cases_ledger.on_time(case_of_record(conn, f"ot:{n}")) for n in range(1, 5)]
        (row,) = rankings_data.figures_for(conn, "2026-10", NOW)["dimensions"]["unit"]
    assert verdicts == [True, True, False, None]
    # closed by the deadline it would be 0 of 4; rectified by it, 2 of 4
    assert (row["cases_due"], row["cases_on_time"], row["on_time_rate"]) == (4, 2, 0.5)
    assert row["cases_on_time"] == verdicts.count(True)


@pytest.mark.parametrize(
    ("rectified", "due", "expected"),
    [
        ("2026-10-10T15:59:59.999999Z", "2026-10-10T15:59:59Z", True),
        ("2026-10-10T16:00:00.000000Z", "2026-10-10T15:59:59Z", False),
        (None, "2026-10-10T15:59:59Z", None),
        ("2026-10-10T15:00:00.000000Z", None, None),
    ],
)
def test_the_one_on_time_rule_answers_alike_in_python_and_sql(engine, rectified, due, expected):
    from sqlalchemy import literal

    with engine.connect() as conn:
        in_sql = conn.execute(
            select(deadlines.on_time(literal(rectified, String), literal(due, String)))
        ).scalar()
    assert deadlines.on_time(rectified, due) is expected
    assert bool(in_sql) is bool(expected)
