"""Paper review cards, as the clerk of 闻韶街道 prints and types them in, on
SQLite and PostgreSQL: numbered cards per window, one entry per card, who
entered it and when, the late flag, every bad field with its message.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from sync_server import db
from sync_server.schema_citizen import paper_entries
from tests.harness import shared_worlds
from tests.harness.collector import CSRF_FIELD, AuthActions, _password_hash
from tests.test_citizen import build, ratings, register, text_of

PASSWORD = "clerk-pass-12"


def today() -> dt.date:
    return dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()


# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres


def build_paper(app) -> None:
    """The two streets and a clerk of 闻韶街道."""
    app.tokens = build(app)
    with app.extensions["hcp_engine"].begin() as conn:
        conn.execute(
            db.users.insert().values(
                username="clerk",
                password_hash=_password_hash(PASSWORD),
                role="clerk",
                unit_id="370305001",
                created_at=db.utc_now(),
            )
        )


@pytest.fixture
def world(engine_app):
    build_paper(engine_app)
    return engine_app


def build_printed(app) -> None:
    """The world with card B01-00001 printed by the admin and A01-00001 by the clerk."""
    build_paper(app)
    print_cards(logged_in(app, "admin"), "B01", "1")
    print_cards(logged_in(app), "A01", "1")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def printed(request, tmp_path_factory):
    """One printed world per database for the entries the app refuses (each
    checks that nothing was stored, so one wrongly taken fails its own case)."""
    with shared_worlds.module_world(request, tmp_path_factory, build_printed) as app:
        yield app


def logged_in(app, who="clerk"):
    client = app.test_client()
    response = AuthActions(client).login(who, PASSWORD if who == "clerk" else None)
    assert response.status_code == 302
    return client


def csrf(client) -> str:
    return CSRF_FIELD.search(client.get("/paper").get_data(as_text=True)).group(1)


def print_cards(client, window="A01", count="3"):
    return client.post(
        "/paper/cards", data={"csrf_token": csrf(client), "window": window, "count": count}
    )


def enter(client, **fields):
    data = {"csrf_token": csrf(client), "card_date": today().isoformat(), **fields}
    return client.post("/paper/entry", data=data)


def test_cards_are_numbered_per_window_and_carry_the_window_qr(world):
    clerk = logged_in(world)
    page = print_cards(clerk).get_data(as_text=True)
    assert re.findall(r'id="card-([^"]+)"', page) == ["A01-00001", "A01-00002", "A01-00003"]
    assert "临淄区政务服务评议卡" in page and "服务态度好" in page and "<svg" in page
    page = print_cards(clerk, count="2").get_data(as_text=True)
    assert re.findall(r'id="card-([^"]+)"', page) == ["A01-00004", "A01-00005"]
    for window, count in (("B01", "2"), ("<script>", "2"), ("A01", "0"), ("A01", "101")):
        refused = print_cards(clerk, window, count)
        assert refused.status_code == 400
    assert text_of(print_cards(clerk, "B01"), "error") == "窗口：请选择本单位的窗口。"
    assert text_of(print_cards(clerk, "A01", "abc"), "error") == "张数：1至100张。"


def test_a_card_is_entered_once_with_who_and_when(world):
    clerk = logged_in(world)
    print_cards(clerk)
    saved = enter(clerk, card_no="A01-00001", level="4", reasons="1 3", comment="等太久")
    assert saved.status_code == 302
    assert saved.location.startswith("/paper/entry?saved=A01-00001&date=")
    page = clerk.get(saved.location)
    assert text_of(page, "saved") == "评议卡 A01-00001 已保存。"
    assert f'value="{today().isoformat()}"' in page.get_data(as_text=True)  # the date is kept
    [stored] = ratings(world)
    assert (stored["channel"], stored["origin"], stored["stars"]) == ("paper", "staff_entry", 2)
    assert stored["tags"] == '["H201", "H203"]' and stored["comment"] == "等太久"
    assert (stored["entered_by"], stored["card_date"]) == ("clerk", today().isoformat())
    assert stored["entered_at"] and stored["window_id"] == "A01"
    again = enter(clerk, card_no="A01-00001", level="1")
    assert again.status_code == 400
    assert text_of(again, "error") == "卡号：该评议卡已录入过。"
    with world.extensions["hcp_engine"].connect() as conn:
        [entry] = conn.execute(select(paper_entries)).all()
    assert (entry.card_no, entry.record_id, entry.late) == ("A01-00001", stored["id"], False)
    # shown as a paper card, never as an on-site rating
    viewer = world.test_client()
    AuthActions(viewer).login("viewer")
    page = viewer.get(f"/evaluations/{stored['id']}").get_data(as_text=True)
    assert "评议卡" in page and "窗口评价器" not in page


def test_a_card_entered_late_is_flagged(world):
    clerk = logged_in(world)
    print_cards(clerk)
    old = (today() - dt.timedelta(days=20)).isoformat()
    saved = enter(clerk, card_no="A01-00002", level="1", card_date=old)
    page = clerk.get(saved.location)
    assert text_of(page, "late") == "逾期录入：晚于卡上日期5个工作日以上。"
    with world.extensions["hcp_engine"].connect() as conn:
        assert conn.execute(select(paper_entries.c.late)).scalar() is True


def test_a_card_with_a_case_number_rates_its_event(world):
    register(world, "LZ2026112720001")
    clerk = logged_in(world)
    print_cards(clerk)
    assert (
        enter(clerk, card_no="A01-00003", level="2", case_no="LZ2026112720001").status_code == 302
    )
    [stored] = ratings(world)
    assert (stored["case_no"], stored["service_no"], stored["stars"]) == ("LZ2026112720001", "1", 4)


BAD = [
    ({"card_no": "A01-1"}, "卡号：按卡上印的填写，如 A01-00012。"),
    ({"card_no": "<script>"}, "卡号：按卡上印的填写，如 A01-00012。"),
    ({"card_no": "A01-00099"}, "卡号：没有印制过该卡号的评议卡。"),
    ({"card_no": "Z99-00001"}, "卡号：没有印制过该卡号的评议卡。"),
    ({"card_no": "B01-00001"}, "卡号：该卡所属窗口不在您的单位范围内。"),
    ({"card_date": "2026-13-01"}, "卡上日期：格式为 YYYY-MM-DD。"),
    ({"card_date": "<b>"}, "卡上日期：格式为 YYYY-MM-DD。"),
    ({"card_date": "2099-01-01"}, "卡上日期：不能晚于今天。"),
    ({"card_date": "2020-01-01"}, "卡上日期：已超过一年。"),
    ({"level": "0"}, "等级：填写所勾方框的序号，1至5。"),
    ({"level": "6"}, "等级：填写所勾方框的序号，1至5。"),
    ({"level": "<"}, "等级：填写所勾方框的序号，1至5。"),
    ({"level": "1", "reasons": "9"}, "原因：填写该等级旁所勾方框的序号，1至3。"),
    ({"level": "1", "reasons": "<script>"}, "原因：填写该等级旁所勾方框的序号，1至3。"),
    ({"level": "5"}, "不满意的评价需要说明原因：请勾选原因或在意见中填写。"),
    ({"comment": "<script>alert(1)</script>"}, "意见：不能包含 < 或 >（不接受网页代码或脚本）。"),
    ({"comment": "长" * 301}, "意见：最多300个字。"),
    ({"case_no": "LZ2026112799999"}, "办件号：没有该办件号的业务。"),
    ({"case_no": "<script>"}, "办件号：1至64位字母、数字、点、下划线或连字符。"),
]


@pytest.mark.parametrize(("fields", "message"), BAD)
def test_bad_entries_get_their_message_and_store_nothing(printed, fields, message):
    clerk = logged_in(printed)
    response = enter(clerk, **{"card_no": "A01-00001", "level": "1", **fields})
    assert response.status_code == 400
    assert text_of(response, "error") == message
    assert ratings(printed) == []
