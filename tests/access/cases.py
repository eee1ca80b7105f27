"""The bad-review loop's rows of the access matrix (tests/test_access.py).

The world's two 差评 make two cases: #1 for ws:1 (闻韶街道's hall) and #2
for xg:1 (雪宫街道's). build() takes case #2 through to closed and files an
appeal (#1, with a file) on it, and adds an assignment rule (#1) and a duty
contact (#1), so every route has something to act on.
"""

from __future__ import annotations

from sync_server import cases, cases_workflow, db
from sync_server.schema_cases import case_rules, duty_contacts

ROUTES = [
    ("GET", "/cases", "cases", None),
    ("GET", "/cases?overdue=1", "cases", None),
    ("GET", "/cases/1", "cases", None),
    ("GET", "/cases/2", "cases", None),
    ("GET", "/cases/ledger", "cases", None),
    ("GET", "/cases/ledger/export?format=csv", "cases", None),
    ("GET", "/cases/alerts", "cases", None),
    ("GET", "/cases/appeals", "cases_review", None),
    ("GET", "/cases/appeals/1/file", "cases", None),
    ("GET", "/cases/settings", "loop_settings", None),
    ("POST", "/cases/1/step", "cases_work", {"action": "verify", "note": "已回电核实"}),
    ("POST", "/cases/2/reopen", "cases_review", {"reason": "回访记录不实"}),
    ("POST", "/cases/1/appeal", "cases_work", {"evidence": "监控显示误按"}),
    ("POST", "/cases/1/assign", "loop_settings", {"unit": "hall-ws"}),
    # case #2 is closed: the reveal is refused (400) and no contact reaches the
    # matrix's pages; tests/test_cases_scope.py reveals one for an open case
    ("POST", "/cases/2/contact", "contact", {}),
    ("POST", "/cases/appeals/1/decide", "cases_review", {"outcome": "upheld", "reason": "证据不足"}),
    ("POST", "/cases/alerts/send", "loop_settings", {}),
    ("POST", "/cases/settings/rules", "loop_settings", {"match_kind": "window", "match_id": "A01", "unit": "370305001"}),
    ("POST", "/cases/settings/rules/delete", "loop_settings", {"id": "1"}),
    ("POST", "/cases/settings/contacts", "loop_settings", {"unit": "hall-ws", "name": "李四", "phone": "0533-7000000"}),
    ("POST", "/cases/settings/contacts/delete", "loop_settings", {"id": "1"}),
    ("GET", "/api/v1/cases", "cases", None),
    ("GET", "/api/v1/cases/1", "cases", None),
    ("GET", "/api/v1/cases/2", "cases", None),
    ("GET", "/api/v1/cases/ledger", "cases", None),
    ("GET", "/api/v1/appeals", "cases_review", None),
    ("POST", "/api/v1/cases/1/steps", "cases_work", {"action": "verify", "note": "已回电核实"}),
    ("POST", "/api/v1/cases/2/reopen", "cases_review", {"reason": "回访记录不实"}),
    ("POST", "/api/v1/cases/2/contact", "contact", {}),  # closed: refused, as the page's
    ("POST", "/api/v1/appeals", "cases_work", {"record_id": "ws:1", "evidence": "监控显示误按"}),
    ("POST", "/api/v1/appeals/1/decision", "cases_review", {"outcome": "upheld", "reason": "证据不足"}),
]  # fmt: skip
GRANTS = {
    "admin": {"cases", "cases_work", "cases_review", "loop_settings"},
    "supervisor": {"cases", "cases_review"},
    "unit_manager": {"cases", "cases_work"},
    "other_manager": {"cases", "cases_work"},
}
OUTSIDE = {
    ("/cases/2", "unit_manager"): 404,
    ("/api/v1/cases/2", "unit_manager"): 404,
    ("/cases/appeals/1/file", "unit_manager"): 404,
    ("/cases/2/contact", "unit_manager"): 404,
    ("/api/v1/cases/2/contact", "unit_manager"): 404,
    ("/cases/1", "other_manager"): 404,
    ("/api/v1/cases/1", "other_manager"): 404,
    ("/cases/1/step", "other_manager"): 404,
    ("/api/v1/cases/1/steps", "other_manager"): 404,
    ("/cases/1/appeal", "other_manager"): 404,
    ("/api/v1/appeals", "other_manager"): 404,
}
SUCCESS_BY_PATH = {
    ("POST", "/cases/2/contact"): 400,
    ("POST", "/api/v1/cases/2/contact"): 400,
    ("POST", "/api/v1/cases/1/steps"): 200,
    ("POST", "/api/v1/cases/2/reopen"): 200,
    ("POST", "/api/v1/appeals"): 201,
    ("POST", "/api/v1/appeals/1/decision"): 200,
}
KNOWN = {
    "/cases/<int:case_id>": "/cases/1",
    "/cases/<int:case_id>/step": "/cases/1/step",
    "/cases/<int:case_id>/reopen": "/cases/2/reopen",
    "/cases/<int:case_id>/appeal": "/cases/1/appeal",
    "/cases/<int:case_id>/assign": "/cases/1/assign",
    "/cases/<int:case_id>/contact": "/cases/2/contact",
    "/cases/appeals/<int:appeal_id>/decide": "/cases/appeals/1/decide",
    "/cases/appeals/<int:appeal_id>/file": "/cases/appeals/1/file",
    "/api/v1/cases/<int:case_id>": "/api/v1/cases/1",
    "/api/v1/cases/<int:case_id>/steps": "/api/v1/cases/1/steps",
    "/api/v1/cases/<int:case_id>/reopen": "/api/v1/cases/2/reopen",
    "/api/v1/cases/<int:case_id>/contact": "/api/v1/cases/2/contact",
    "/api/v1/appeals/<int:appeal_id>/decision": "/api/v1/appeals/1/decision",
}
WALK = (
    ("verify", {"note": "已回电"}),
    ("classify", {"note": "一般问题", "kind": "fix_now"}),
    ("rectify", {"note": "已整改"}),
    ("feed_back", {"note": "已反馈"}),
    ("visit", {"note": "已回访", "verdict": "satisfied"}),
    ("close", {"note": "办结"}),
)


def build(app):
    engine = app.extensions["hcp_engine"]
    with engine.begin() as conn:
        assert cases.get_case(conn, 2)["record_id"] == "xg:1"
        for action, values in WALK:
            cases_workflow.take_step(conn, 2, action, values)
        cases_workflow.file_appeal(
            conn, 2, {"evidence": "评价器按键故障"}, ("log.txt", "text/plain", b"key log")
        )
        conn.execute(
            case_rules.insert().values(
                match_kind="item",
                match_id="ITEM-X",
                unit_id="hall-ws",
                created_by="admin",
                created_at=db.utc_now(),
            )
        )
        conn.execute(
            duty_contacts.insert().values(
                unit_id="370305001",
                name="值班员",
                phone="0533-7111111",
                created_by="admin",
                created_at=db.utc_now(),
            )
        )


# (role, method, path, body, status) for tests/test_openapi.py's CALLS
OPENAPI_CALLS = [
    ("unit_manager", "get", "/api/v1/cases", None, 200),
    ("admin", "get", "/api/v1/cases?state=lost", None, 400),
    ("unit_manager", "get", "/api/v1/cases/1", None, 200),
    ("other_manager", "get", "/api/v1/cases/1", None, 404),
    ("unit_manager", "post", "/api/v1/cases/1/steps", {"action": "verify", "note": "已回电"}, 200),
    ("unit_manager", "post", "/api/v1/cases/1/steps", {"action": "close", "note": "x"}, 400),
    ("supervisor", "post", "/api/v1/cases/2/reopen", {"reason": "回访不实"}, 200),
    ("unit_manager", "post", "/api/v1/cases/1/contact", {}, 200),
    ("supervisor", "post", "/api/v1/cases/2/contact", {}, 400),
    ("other_manager", "post", "/api/v1/cases/1/contact", {}, 404),
    ("unit_manager", "post", "/api/v1/appeals", {"record_id": "ws:1", "evidence": "误按"}, 201),
    ("supervisor", "get", "/api/v1/appeals", None, 200),
    ("supervisor", "post", "/api/v1/appeals/1/decision", {"outcome": "upheld", "reason": "证据不足"}, 200),
    ("unit_manager", "get", "/api/v1/cases/ledger", None, 200),
]  # fmt: skip
