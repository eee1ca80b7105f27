"""The citizen's own pages, as a citizen and a hostile client use them, on
SQLite and PostgreSQL: the window QR page, the case QR page, the web portal,
the kiosk follow-up, the case QR API for the window PC, and the phone a
rater leaves (sealed, revealed only to the roles handling 差评, logged).

The world: 闻韶街道 (370305001) with hall-ws, window A01 and staff S1001;
雪宫街道 (370305002) with hall-xg, window B01 (no service events).
"""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from sqlalchemy import select

from sync_server import audit, db, org, phones, service_events, tokens
from sync_server import citizen_tokens as citizen_tokens
from sync_server.citizen_pages import event_link
from sync_server.schema_citizen import event_phones, portal_failures, rater_phones
from tests.harness import shared_worlds
from tests.harness.collector import CSRF_FIELD, AuthActions

ITEM = "11370305MB2856093X437030500100101"
PHONE = "13812345678"
THANKS = "感谢您的评价！"
ALREADY = "已评价"
FORGED = "该链接无效：已被改动或并非本系统生成。"
PERIOD_OVER = "评价期已过：办结之日起5个工作日内可评价"
NO_MATCH = "没有与该办件号和校验码相符的业务。"


def utc(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def build(app) -> dict:
    engine = app.extensions["hcp_engine"]
    made = {}
    with engine.begin() as conn:
        org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
        org.add(conn, "units", "hall-xg", "雪宫街道便民服务中心", "370305002", kind="hall")
        org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")
        org.add(conn, "windows", "B01", "雪宫一号窗", "hall-xg")
        org.add(conn, "staff", "S1001", "王敏", "hall-ws")
        made["clerk_ws"] = tokens.create(conn, "business-ws", "clerk", "370305001", "admin")[1]
        made["clerk_xg"] = tokens.create(conn, "business-xg", "clerk", "370305002", "admin")[1]
    return made


def register(app, case_no, handled=None, phone=None, window="A01", unit="hall-ws", service="1"):
    """A service event as the business system registers it when it happens
    (`handled`, default now: registered at that moment, never backdated)."""
    handled = (handled or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    body = {
        "case_no": case_no,
        "service_no": service,
        "item_code": ITEM,
        "unit_id": unit,
        "window_id": window,
        "handled_at": utc(handled),
    }
    if window == "A01":
        body["staff_id"] = "S1001"
    if phone:
        body["phone"] = phone
    engine = app.extensions["hcp_engine"]
    with app.test_request_context("/"):
        answer, _created = service_events.register_one(
            engine, body, "demo", "test", now=handled + dt.timedelta(seconds=1)
        )
    return answer


# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres


@pytest.fixture
def world(engine_app):
    engine_app.tokens = build(engine_app)
    return engine_app


def _build_refusing(app):
    app.tokens = build(app)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def refusing(request, tmp_path_factory):
    """One world per database for the pages that only read or refuse what is
    sent (each checks that nothing was stored, so a refusal that wrongly went
    through fails its own case)."""
    with shared_worlds.module_world(request, tmp_path_factory, _build_refusing) as app:
        yield app


def ratings(app) -> list[dict]:
    ev = db.evaluations.c
    with app.extensions["hcp_engine"].connect() as conn:
        rows = conn.execute(select(db.evaluations).order_by(ev.received_at)).all()
    return [dict(row._mapping) for row in rows]


def text_of(response, element_id: str) -> str | None:
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', response.get_data(as_text=True))
    return html.unescape(found.group(1)).strip() if found else None


def csrf(client, path) -> str:
    return CSRF_FIELD.search(client.get(path).get_data(as_text=True)).group(1)


def rate(client, path, stars, step2=None, **step1):
    """Choose a level (step 1) and, with `step2`, fill and send the rest."""
    token = csrf(client, path)
    first = client.post(path, data={"csrf_token": token, "stars": str(stars), **step1})
    if step2 is None:
        return first
    page = first.get_data(as_text=True)
    assert first.status_code == 200, page[-600:]
    form_token = re.search(r'name="form_token" value="([^"]*)"', page).group(1)
    version = re.search(r'name="content_version" value="([^"]*)"', page).group(1)
    data = {
        "csrf_token": token,
        "stars": str(stars),
        "step": "2",
        "form_token": form_token,
        "content_version": version,
        **step1,
        **step2,
    }
    return client.post(path, data=data)


# --- window QR --------------------------------------------------------------------


def test_a_window_with_events_today_asks_for_the_case_and_binds_the_rating(world):
    register(world, "LZ2026112700001")
    client = world.test_client()
    page = client.get("/r/w/A01")
    assert page.status_code == 200
    assert text_of(page, "subject") == "闻韶一号窗"
    assert 'id="case_no"' in page.get_data(as_text=True) and "required" in page.get_data(
        as_text=True
    )
    no_case = rate(client, "/r/w/A01", 2)
    assert no_case.status_code == 400
    assert text_of(no_case, "error") == "办件号：请输入回执单上的办件号。"
    other = rate(client, "/r/w/A01", 2, case_no="LZ2026112799999")
    assert text_of(other, "error") == "办件号：本窗口没有该办件号的业务。"
    no_reason = rate(client, "/r/w/A01", 2, step2={}, case_no="LZ2026112700001")
    assert no_reason.status_code == 400
    assert text_of(no_reason, "error") == "不满意的评价需要说明原因：请勾选原因或在意见中填写。"
    done = rate(client, "/r/w/A01", 2, step2={"tags": ["H201"]}, case_no="LZ2026112700001")
    assert done.status_code == 200 and text_of(done, "notice") == THANKS
    [stored] = ratings(world)
    assert stored["channel"] == "qr_window" and stored["client"] == "mobile"
    assert (stored["case_no"], stored["service_no"], stored["window_id"]) == (
        "LZ2026112700001",
        "1",
        "A01",
    )
    assert stored["stars"] == 2 and stored["tags"] == '["H201"]'
    assert stored["case_staff_id"] == "S1001" and stored["origin"] == "citizen"
    again = rate(client, "/r/w/A01", 5, case_no="LZ2026112700001")
    assert again.status_code == 409 and text_of(again, "notice") == ALREADY
    assert len(ratings(world)) == 1


def test_a_window_without_events_today_rates_the_window(world):
    client = world.test_client()
    page = client.get("/r/w/B01").get_data(as_text=True)
    assert "选填" in page and "required" not in page
    done = rate(client, "/r/w/B01", 4, step2={"comment": "很好"})
    assert text_of(done, "notice") == THANKS
    [stored] = ratings(world)
    assert (stored["window_id"], stored["org_id"], stored["case_no"]) == ("B01", "hall-xg", None)
    assert stored["comment"] == "很好" and stored["stars"] == 4


def test_a_form_sent_twice_stores_one_rating(world):
    client = world.test_client()
    token = csrf(client, "/r/w/B01")
    page = client.post("/r/w/B01", data={"csrf_token": token, "stars": "5"}).get_data(as_text=True)
    form_token = re.search(r'name="form_token" value="([^"]*)"', page).group(1)
    data = {"csrf_token": token, "stars": "5", "step": "2", "form_token": form_token,
            "content_version": "hcp-demo-1"}  # fmt: skip
    assert text_of(client.post("/r/w/B01", data=data), "notice") == THANKS
    assert text_of(client.post("/r/w/B01", data=data), "notice") == THANKS
    assert len(ratings(world)) == 1


def test_an_unknown_or_retired_window(world):
    client = world.test_client()
    assert text_of(client.get("/r/w/Z99"), "notice") == "该二维码不属于在用的窗口。"
    assert client.get("/r/w/<script>").status_code == 404
    with world.extensions["hcp_engine"].begin() as conn:
        org.retire(conn, "windows", "B01")
    assert client.get("/r/w/B01").status_code == 404


def test_english_on_request(refusing):
    page = refusing.test_client().get("/r/w/B01?lang=en").get_data(as_text=True)
    assert "How satisfied are you?" in page and "Very satisfied" in page


# --- bad input, nothing stored ---------------------------------------------------------


BAD_FIELDS = [
    ({"comment": "好" * 301}, "意见：最多300个字。"),
    ({"comment": "<script>alert(1)</script>"}, "意见：不能包含 < 或 >（不接受网页代码或脚本）。"),
    ({"comment": "ok\x00"}, "意见：含有无法保存的字符。"),
    ({"tags": ["H999"]}, "评价内容：只能从列出的选项中选择。"),
    ({"tags": ["H501"]}, "评价内容：只能从列出的选项中选择。"),  # a tag of another level
    ({"tags": ["H201", "<b>"]}, "评价内容：只能从列出的选项中选择。"),
    ({"tags": ["H201"], "phone": "<script>"}, "电话：请填写11位手机号，或带区号的固定电话。"),
    ({"tags": ["H201"], "phone": "1381234567"}, "电话：请填写11位手机号，或带区号的固定电话。"),
    ({"tags": ["H201"], "phone": PHONE}, "电话：请勾选同意回访，或不填写电话。"),
    ({"tags": ["H201"], "content_version": "<script>"}, "评价内容已更新，请重新选择。"),
    ({"tags": ["H201"], "form_token": "<script>"}, "表单已被改动，请重新开始。"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_FIELDS)
def test_bad_input_gets_its_message_and_nothing_is_stored(refusing, fields, message):
    client = refusing.test_client()
    response = rate(client, "/r/w/B01", 2, step2=fields)
    assert response.status_code == 400
    assert text_of(response, "error") == message
    assert ratings(refusing) == []


@pytest.mark.parametrize(
    ("stars", "case_no", "message"),
    [
        ("6", None, "请选择五个评价等级之一。"),
        ("<script>", None, "请选择五个评价等级之一。"),
        ("5", "<script>alert(1)</script>", "办件号：1至64位字母、数字、点、下划线或连字符。"),
    ],
)
def test_a_bad_level_or_case_number(refusing, stars, case_no, message):
    client = refusing.test_client()
    data = {"csrf_token": csrf(client, "/r/w/B01"), "stars": stars}
    if case_no:
        data["case_no"] = case_no
    response = client.post("/r/w/B01", data=data)
    assert response.status_code == 400 and text_of(response, "error") == message
    assert ratings(refusing) == []


def test_a_post_without_the_form_token_is_refused(refusing):
    response = refusing.test_client().post("/r/w/B01", data={"stars": "5"})
    assert response.status_code == 400 and ratings(refusing) == []


# --- case QR ----------------------------------------------------------------------------


def test_the_case_qr_rates_its_event_once(world):
    register(world, "LZ2026112700002")
    with world.test_request_context("/"):
        event = service_events.listing(world.extensions["hcp_engine"], None)["items"][0]
        path = event_link(event, "qr_case")
    client = world.test_client()
    page = client.get(path)
    assert page.status_code == 200 and text_of(page, "subject") == "办件 LZ2026112700002"
    done = rate(client, path, 5, step2={"tags": ["H501", "H503"]})
    assert text_of(done, "notice") == THANKS
    [stored] = ratings(world)
    assert stored["channel"] == "qr_case" and stored["case_no"] == "LZ2026112700002"
    assert stored["tags"] == '["H501", "H503"]'
    again = client.get(path)  # refused at once, before a level is chosen
    assert again.status_code == 409 and text_of(again, "notice") == ALREADY
    assert len(ratings(world)) == 1


def test_a_rated_event_takes_one_appended_rating(world):
    register(world, "LZ2026112700010")
    with world.test_request_context("/"):
        event = service_events.listing(world.extensions["hcp_engine"], None)["items"][0]
        path = event_link(event, "qr_case")
    client = world.test_client()
    assert text_of(rate(client, path, 2, step2={"tags": ["H201"]}), "notice") == THANKS
    refused = client.get(path)
    assert text_of(refused, "notice") == ALREADY
    link = re.search(r'id="append" href="([^"]+)"', refused.get_data(as_text=True)).group(1)
    assert link == path + "?append=1"
    page = client.get(link)
    assert page.status_code == 200 and "<h1>追加评价</h1>" in page.get_data(as_text=True)
    assert text_of(rate(client, link, 4, step2={"comment": "已整改"}), "notice") == THANKS
    first, appended = ratings(world)
    assert (appended["attempt"], appended["follows"], appended["stars"]) == (2, first["id"], 4)
    assert appended["repeat_of"] is None and appended["channel"] == "qr_case"
    for again in (path, link):  # the one appended rating is given: nothing more
        answer = client.get(again)
        assert text_of(answer, "notice") == ALREADY and 'id="append"' not in answer.get_data(
            as_text=True
        )
    assert len(ratings(world)) == 2


def _token_path(world, event_id, last_day, purpose="qr_case"):
    with world.test_request_context("/"):
        token = citizen_tokens.event_token(citizen_tokens.app_key(), purpose, event_id, last_day)
    return ("/r/c/" if purpose == "qr_case" else "/rate/e/") + token


def test_forged_and_expired_case_tokens(world):
    answer = register(world, "LZ2026112700003")
    event_id, last_day = answer["id"], dt.date.fromisoformat(answer["rate_until"])
    client = world.test_client()
    good = _token_path(world, event_id, last_day)
    assert client.get(good).status_code == 200
    forged = [
        good[:-1] + ("0" if good[-1] != "0" else "1"),  # the MAC changed
        _token_path(world, event_id, last_day)[:-24] + "0" * 24,
        good.replace(f"/r/c/{event_id}-", f"/r/c/{event_id + 1}-"),  # another event
        good.replace(last_day.strftime("%Y%m%d"), "20991231"),  # a later day
        _token_path(world, event_id, last_day, "web").replace("/rate/e/", "/r/c/"),
        "/r/c/<script>",
        "/r/c/" + "9" * 300,
    ]
    for path in forged:
        response = client.get(path)
        assert response.status_code == 404, path
        assert text_of(response, "notice") == FORGED
    # signed with the right key, but its last day has passed
    today = citizen_tokens.today(world.config["HCP_TIMEZONE"])
    expired = _token_path(world, event_id, today - dt.timedelta(days=2))
    response = client.get(expired)
    assert response.status_code == 410 and text_of(response, "notice") == PERIOD_OVER
    assert client.post(expired, data={"stars": "5"}).status_code == 400  # no CSRF token
    assert ratings(world) == []


def test_an_event_out_of_its_period_is_refused_on_every_page(world):
    handled = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    answer = register(world, "LZ2026100100001", handled=handled)
    client = world.test_client()
    # a token still in date: today where the collector is (Asia/Shanghai; the
    # machine's own date is a day behind from 16:00 UTC)
    today = citizen_tokens.today(world.config["HCP_TIMEZONE"])
    path = _token_path(world, answer["id"], today)
    response = client.get(path)
    assert response.status_code == 409 and text_of(response, "notice") == PERIOD_OVER
    window = rate(client, "/r/w/A01", 5, case_no="LZ2026100100001")
    assert window.status_code == 409 and text_of(window, "notice") == PERIOD_OVER
    assert ratings(world) == []


# --- the web portal -----------------------------------------------------------------


def find(client, case_no, check):
    token = csrf(client, "/rate")
    return client.post("/rate", data={"csrf_token": token, "case_no": case_no, "check": check})


def test_the_portal_finds_an_event_by_phone_digits_or_receipt_code(world):
    register(world, "LZ2026112700004", phone=PHONE)
    register(world, "LZ2026112700005")
    client = world.test_client()
    found = find(client, "LZ2026112700004", PHONE[-4:])
    assert found.status_code == 302 and found.location.startswith("/rate/e/")
    page = client.get(found.location)
    assert text_of(page, "subject") == "办件 LZ2026112700004"
    done = rate(client, found.location, 3, step2={})
    assert text_of(done, "notice") == THANKS
    with world.test_request_context("/"):
        code = citizen_tokens.receipt_code(citizen_tokens.app_key(), "LZ2026112700005", "1")
    by_receipt = find(client, "LZ2026112700005", code)
    assert by_receipt.status_code == 302
    desktop = world.test_client()
    desktop.environ_base["HTTP_USER_AGENT"] = "Mozilla/5.0 (X11; Linux x86_64)"
    assert text_of(rate(desktop, by_receipt.location, 5, step2={}), "notice") == THANKS
    stored = {r["case_no"]: r for r in ratings(world)}
    assert stored["LZ2026112700004"]["channel"] == "web"
    assert stored["LZ2026112700005"]["client"] == "pc"


def test_the_portal_limits_failed_checks_per_case_and_per_address(world):
    register(world, "LZ2026112700006", phone=PHONE)
    client = world.test_client()
    assert text_of(find(client, "LZ2026112700006", "12345"), "error") == (
        "校验码：请输入办事时登记手机号的后四位，或回执单上的8位评价码。"
    )
    assert text_of(find(client, "<script>", "1234"), "error") == (
        "办件号：1至64位字母、数字、点、下划线或连字符。"
    )
    unknown = find(client, "LZ2026112799999", "5678")
    assert unknown.status_code == 400 and text_of(unknown, "error") == NO_MATCH
    for _ in range(5):
        wrong = find(client, "LZ2026112700006", "0000")
        assert wrong.status_code == 400 and text_of(wrong, "error") == NO_MATCH
    blocked = find(client, "LZ2026112700006", PHONE[-4:])  # right, but too late
    assert blocked.status_code == 429
    assert text_of(blocked, "error") == "失败次数过多，请15分钟后再试。"
    # the address's own limit: 20 failures over any cases
    for n in range(14):
        find(client, f"LZ20261127{n:05d}X", "0000")
    register(world, "LZ2026112700007", phone=PHONE)
    assert find(client, "LZ2026112700007", PHONE[-4:]).status_code == 429
    other_address = world.test_client()
    other_address.environ_base["REMOTE_ADDR"] = "10.0.0.9"
    assert find(other_address, "LZ2026112700007", PHONE[-4:]).status_code == 302
    with world.extensions["hcp_engine"].connect() as conn:
        assert len(conn.execute(select(portal_failures)).all()) == 20
    assert ratings(world) == []


# --- the phone ------------------------------------------------------------------------


def test_a_phone_is_sealed_and_shown_only_on_an_audited_reveal(world):
    client = world.test_client()
    done = rate(
        client, "/r/w/B01", 1, step2={"tags": ["H101"], "phone": "138 1234 5678", "consent": "yes"}
    )
    assert text_of(done, "notice") == THANKS
    [stored] = ratings(world)
    engine = world.extensions["hcp_engine"]
    with engine.connect() as conn:
        [kept] = conn.execute(select(rater_phones)).all()
        dump = repr(conn.execute(select(rater_phones)).all())
    assert kept.record_id == stored["id"] and PHONE not in dump and "5678" not in dump
    viewer = world.test_client()
    AuthActions(viewer).login("viewer")  # the supervisor handles 差评
    page = viewer.post(
        "/citizen/phone",
        data={"csrf_token": csrf(viewer, "/evaluations"), "record_id": stored["id"]},
    )
    assert page.status_code == 200 and text_of(page, "phone") == PHONE
    assert audit.entries(engine, action="contact.reveal")["items"][0]["target"] == stored["id"]
    # the evaluation pages never show it
    assert PHONE not in viewer.get(f"/evaluations/{stored['id']}").get_data(as_text=True)
    # a changed byte fails the MAC: not shown, and logged
    sealed = kept.sealed
    flipped = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with engine.begin() as conn:
        conn.execute(rater_phones.update().values(sealed=flipped))
    page = viewer.post(
        "/citizen/phone",
        data={"csrf_token": csrf(viewer, "/evaluations"), "record_id": stored["id"]},
    )
    assert text_of(page, "phone") == "存储的号码未通过完整性校验，不予显示。此事已记录。"
    assert audit.entries(engine, action="contact.tampered")["total"] == 1


def test_phone_sealing_round_trip_and_tampering():
    key = bytes(range(48))
    sealed = phones.seal(key, "１３８１２３４５６７８")
    assert phones.unseal(key, sealed) == PHONE
    assert phones.seal(key, PHONE) != sealed  # a fresh IV each time
    assert phones.unseal(key, phones.seal(key, "0533-7123456")) == "0533-7123456"
    with pytest.raises(phones.Tampered, match="MAC does not verify"):
        phones.unseal(bytes(48), sealed)
    with pytest.raises(phones.Tampered, match="unknown shape"):
        phones.unseal(key, "p2:" + sealed[3:])
    with pytest.raises(phones.PhoneError):
        phones.seal(key, "12345")
    assert phones.lookup(key, PHONE) == phones.lookup(key, "138 1234 5678")


def test_an_event_phone_is_kept_sealed_apart(world):
    answer = register(world, "LZ2026112700008", phone=PHONE)
    assert answer["has_phone"] is True
    with world.extensions["hcp_engine"].connect() as conn:
        row = conn.execute(select(event_phones)).one()
        events = repr(conn.exec_driver_sql("SELECT * FROM service_events").all())
    assert PHONE not in repr(row) and PHONE not in events
    with world.app_context():
        with world.extensions["hcp_engine"].connect() as conn:
            assert phones.event_phone(conn, phones.app_key(), "LZ2026112700008", "1") == PHONE


# --- the case QR API for the window PC ------------------------------------------------


def test_the_window_pc_gets_the_case_qr_of_its_event(world):
    from tests.test_service_events import schema_problems

    register(world, "LZ2026112700009")
    client = world.test_client()
    headers = {"Authorization": f"Bearer {world.tokens['clerk_ws']}"}
    answer = client.get("/api/v1/case-qr?case_no=LZ2026112700009&service_no=1", headers=headers)
    assert answer.status_code == 200
    body = answer.get_json()
    assert schema_problems(world, answer, "/api/v1/case-qr", "get", "200") == []
    assert body["url"].startswith("http://localhost/r/c/")
    assert client.get(body["url"].replace("http://localhost", "")).status_code == 200
    assert body["svg"].startswith("<svg") and len(body["receipt_code"]) == 8
    other = {"Authorization": f"Bearer {world.tokens['clerk_xg']}"}
    outside = client.get("/api/v1/case-qr?case_no=LZ2026112700009&service_no=1", headers=other)
    assert outside.status_code == 404 and outside.get_json() == {"error": "not found"}
    bad = client.get("/api/v1/case-qr?case_no=<x>&service_no=1", headers=headers)
    assert bad.status_code == 400
    assert bad.get_json() == {"error": "case_no: 1..64 characters of A-Z a-z 0-9 . _ -"}


# --- the kiosk's follow-up --------------------------------------------------------------


def test_the_kiosk_follow_up_link_takes_one_remark(world):
    from kiosk.app import followup_token

    engine = world.extensions["hcp_engine"]
    key = bytes(range(32))
    db.add_device(engine, "ks-01", key.hex(), kind="kiosk")
    record_id = "ks-01:7"
    path = f"/followup?id={record_id}&t={followup_token(key, record_id)}"
    client = world.test_client()
    page = client.get(path)
    assert page.status_code == 200
    assert text_of(page, "status") == "您在大厅自助机上的评价正在上传。"
    token = CSRF_FIELD.search(page.get_data(as_text=True)).group(1)
    data = {"csrf_token": token, "id": record_id, "t": followup_token(key, record_id)}
    empty = client.post("/followup", data=data)
    assert empty.status_code == 400 and text_of(empty, "error") == "意见：请填写您要补充的意见。"
    script = client.post("/followup", data={**data, "comment": "<img src=x>"})
    assert text_of(script, "error") == "意见：不能包含 < 或 >（不接受网页代码或脚本）。"
    added = client.post("/followup", data={**data, "comment": "希望增加座椅"})
    assert text_of(added, "notice") == "谢谢，您的意见已补充。"
    assert text_of(client.get(path), "notice") == "您已补充过意见，谢谢！"
    for bad in (
        f"/followup?id={record_id}&t={'0' * 32}",
        f"/followup?id=kp-01:7&t={followup_token(key, 'kp-01:7')}",
        "/followup?id=<script>&t=x",
        "/followup",
    ):
        assert text_of(client.get(bad), "notice") == FORGED, bad
    assert ratings(world) == []


def test_a_form_larger_than_any_real_one_is_refused_unread(refusing):
    client = refusing.test_client()
    token = csrf(client, "/r/w/B01")
    data = {"csrf_token": token, "stars": "5", "comment": "长" * 10000}
    response = client.post("/r/w/B01", data=data)
    assert response.status_code == 413 and text_of(response, "notice") == "提交的内容过大。"
    portal = client.post("/rate", data={"csrf_token": token, "case_no": "x" * 20000})
    assert portal.status_code == 413 and text_of(portal, "error") == "提交的内容过大。"
    assert ratings(refusing) == []


def test_window_ratings_without_an_event_are_limited_per_address(world):
    client = world.test_client()
    for _ in range(3):
        assert text_of(rate(client, "/r/w/B01", 5, step2={}), "notice") == THANKS
    fourth = rate(client, "/r/w/B01", 5, step2={})
    assert fourth.status_code == 429
    assert text_of(fourth, "notice") == (
        "今天您所在网络已多次评价该窗口，请填写回执单上的办件号后评价。"
    )
    elsewhere = world.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "10.0.0.8"
    assert text_of(rate(elsewhere, "/r/w/B01", 4, step2={}), "notice") == THANKS
    assert text_of(rate(client, "/r/w/A01", 4, step2={}), "notice") == THANKS  # another window
    assert len(ratings(world)) == 5


def test_the_window_page_counts_wrong_case_numbers_like_the_portal(world):
    register(world, "LZ2026112700011")
    client = world.test_client()
    for _ in range(5):
        wrong = rate(client, "/r/w/A01", 5, case_no="LZ2026112700011X")
        assert text_of(wrong, "error") == "办件号：本窗口没有该办件号的业务。"
    blocked = rate(client, "/r/w/A01", 5, case_no="LZ2026112700011X")
    assert text_of(blocked, "error") == "失败次数过多，请15分钟后再试。"
    assert text_of(find(client, "LZ2026112700011X", "1234"), "error") == (
        "失败次数过多，请15分钟后再试。"
    )
    # the right number of another case is not blocked by the wrong one's tries
    right = rate(client, "/r/w/A01", 5, case_no="LZ2026112700011")
    assert right.status_code == 200 and 'name="form_token"' in right.get_data(as_text=True)
