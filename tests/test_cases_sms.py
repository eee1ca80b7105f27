# ruff: noqa: F811 (the live fixture is imported from test_sms)
"""A 差评 given by SMS whose reason came in the next SMS: the case page and the
case's API answer show that reason beside the case (the rating itself never
changes), over real HTTP through the simulated gateway (tests/test_sms.py's
world), on SQLite and PostgreSQL. A 差评 from a keypad has no SMS reason."""

from __future__ import annotations

from sqlalchemy import select

from sync_server import sms
from sync_server.schema_cases import cases
from tests.harness.collector import AuthActions
from tests.harness.records import add_evaluation
from tests.test_cases import check
from tests.test_citizen import PHONE, ratings, register, text_of
from tests.test_sms import live, reply  # noqa: F401 (live: a fixture)


def case_id_of(app, record_id: str) -> int:
    with app.extensions["hcp_engine"].connect() as conn:
        return conn.execute(select(cases.c.id).where(cases.c.record_id == record_id)).scalar_one()


def test_the_reason_sent_by_sms_is_on_the_case_page_and_in_the_api(live):
    register(live, "LZ2026112710009", phone=PHONE)
    assert reply(live, "４") == sms.ASK_REASON  # 不满意, no reason yet
    assert reply(live, "窗口让我跑了三趟") == sms.REASON_THANKS
    [stored] = ratings(live)
    assert stored["channel"] == "sms" and stored["comment"] is None
    case_id = case_id_of(live, stored["id"])
    add_evaluation(live.extensions["hcp_engine"], "kp-01:1", 2, window_id="A01", comment="慢")
    keypad_case = case_id_of(live, "kp-01:1")

    supervisor = live.test_client()
    AuthActions(supervisor).login("viewer")
    page = supervisor.get(f"/cases/{case_id}")
    assert page.status_code == 200
    assert text_of(page, "case-sms-reason") == "窗口让我跑了三趟"
    assert "评价人短信补充的理由" in page.get_data(as_text=True)
    detail = check(supervisor, f"/api/v1/cases/{case_id}")
    assert detail["sms_reason"] == "窗口让我跑了三趟"
    assert detail["case"]["reason"] is None  # the call-back still records its own

    other = supervisor.get(f"/cases/{keypad_case}")
    assert text_of(other, "case-sms-reason") is None
    assert check(supervisor, f"/api/v1/cases/{keypad_case}")["sms_reason"] is None
