"""Alerts to a unit's duty contacts: recorded with the case, delivered
afterwards by a sender (a webhook against a real local HTTP server, the log
sender), failures recorded and retried, nothing of the rater in them; the
duty contacts and rules kept on the settings page, audited."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from sync_server import cases_alerts, db, org
from sync_server.schema_cases import case_alerts, case_rules, duty_contacts
from tests.harness.collector import AuthActions
from tests.harness.records import CONTACT, add_evaluation


class Gateway:
    """A local HTTP server standing in for the SMS or messaging gateway."""

    def __init__(self, status=200):
        self.status = status
        self.bodies = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers["Content-Length"])
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def gateway():
    server = Gateway()
    yield server
    server.close()


def setup_unit(engine):
    org.seed(engine)
    with engine.begin() as conn:
        org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
        org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")
        for name, phone in (("赵值班", "0533-7000001"), ("钱值班", "13700000002")):
            conn.execute(
                duty_contacts.insert().values(
                    unit_id="hall-ws",
                    name=name,
                    phone=phone,
                    created_by="admin",
                    created_at=db.utc_now(),
                )
            )


def alert_rows(engine):
    a = case_alerts.c
    with engine.connect() as conn:
        return conn.execute(
            select(a.case_id, a.state, a.attempts, a.last_error).order_by(a.id)
        ).all()


def test_a_webhook_gets_the_alert_and_nothing_of_the_rater(engine, gateway):
    setup_unit(engine)
    add_evaluation(engine, "kp-01:1", 1, window_id="A01", comment="态度恶劣", contact=CONTACT)
    assert [tuple(r) for r in alert_rows(engine)] == [(1, "pending", 0, None)]
    sender = cases_alerts.sender_from_config(f"webhook:{gateway.url}")
    assert cases_alerts.deliver(engine, sender) == {"sent": 1, "failed": 0}
    assert gateway.bodies == [
        {
            "alert_id": 1,
            "case_id": 1,
            "unit_id": "hall-ws",
            "stars": 1,
            "effective_at": "2026-11-26T08:30:00Z",
            "recipients": [
                {"name": "赵值班", "phone": "0533-7000001", "email": None},
                {"name": "钱值班", "phone": "13700000002", "email": None},
            ],
        }
    ]
    assert CONTACT not in json.dumps(gateway.bodies) and "态度恶劣" not in json.dumps(
        gateway.bodies, ensure_ascii=False
    )
    assert [tuple(r) for r in alert_rows(engine)] == [(1, "sent", 1, None)]
    # sent is sent: a second run sends nothing again
    assert cases_alerts.deliver(engine, sender) == {"sent": 0, "failed": 0}
    assert len(gateway.bodies) == 1


def test_a_failing_gateway_is_recorded_and_tried_again_until_the_limit(engine):
    setup_unit(engine)
    add_evaluation(engine, "kp-01:1", 2, window_id="A01", comment="慢")
    gateway = Gateway(status=503)
    try:
        sender = cases_alerts.WebhookSender(gateway.url)
        assert cases_alerts.deliver(engine, sender) == {"sent": 0, "failed": 1}
        row = alert_rows(engine)[0]
        assert (row.state, row.attempts) == ("failed", 1)
        assert row.last_error == "HTTPError: HTTP Error 503: Service Unavailable"
        for _ in range(cases_alerts.MAX_ATTEMPTS - 1):
            cases_alerts.deliver(engine, sender)
        assert alert_rows(engine)[0].attempts == cases_alerts.MAX_ATTEMPTS
        assert cases_alerts.deliver(engine, sender) == {"sent": 0, "failed": 0}  # given up
        assert len(gateway.bodies) == cases_alerts.MAX_ATTEMPTS
    finally:
        gateway.close()


def test_the_log_sender_writes_one_line(engine, caplog):
    setup_unit(engine)
    add_evaluation(engine, "kp-01:1", 1, window_id="A01", comment="差")
    with caplog.at_level(logging.INFO, logger="hcp.cases.alerts"):
        assert cases_alerts.deliver(engine, cases_alerts.sender_from_config("log")) == {
            "sent": 1,
            "failed": 0,
        }
    assert caplog.messages == [
        "case 1 for unit hall-ws (1 stars, rated 2026-11-26T08:30:00Z): alert to 赵值班, 钱值班"
    ]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("sms", "HCP_CASE_ALERT_SENDER: must be log or webhook:<URL>, got 'sms'"),
        ("webhook:ftp://x", "HCP_CASE_ALERT_SENDER: a webhook needs an http(s) URL, got 'ftp://x'"),
    ],
)
def test_an_unknown_sender_is_refused_by_name(value, error):
    with pytest.raises(ValueError) as refused:
        cases_alerts.sender_from_config(value)
    assert str(refused.value) == error


def test_the_admin_keeps_duty_contacts_and_rules_and_each_change_is_audited(engine_app):
    engine = engine_app.extensions["hcp_engine"]
    with engine.begin() as conn:
        org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
    client = engine_app.test_client()
    auth = AuthActions(client)
    auth.login("admin")
    token = auth.csrf_token("/cases/settings")

    def post(path, **data):
        return client.post(path, data={"csrf_token": token, **data})

    assert post("/cases/settings/contacts", unit="hall-ws", name="孙值班", phone="0533-7000009").status_code == 302  # fmt: skip
    bad = post("/cases/settings/contacts", unit="hall-ws", name="李", phone="call me")
    assert bad.status_code == 400
    assert "电话：只能是数字，可带 + 和 -，最多 20 位" in bad.get_data(as_text=True)
    assert post("/cases/settings/contacts", unit="nowhere", name="李", phone="1").status_code == 400
    assert post("/cases/settings/rules", match_kind="item", match_id="ITEM-1", unit="hall-ws").status_code == 302  # fmt: skip
    twice = post("/cases/settings/rules", match_kind="item", match_id="ITEM-1", unit="hall-ws")
    assert twice.status_code == 400
    assert "编码：ITEM-1 已有交办规则" in twice.get_data(as_text=True)
    odd = post("/cases/settings/rules", match_kind="room", match_id="R1", unit="hall-ws")
    assert "规则对象：须为事项、窗口、工作人员或单位" in odd.get_data(as_text=True)
    page = client.get("/cases/settings").get_data(as_text=True)
    assert "孙值班" in page and "ITEM-1" in page and "交办规则" in page
    assert post("/cases/settings/rules/delete", id="1").status_code == 302
    assert post("/cases/settings/rules/delete", id="1").status_code == 404
    with engine.connect() as conn:
        assert conn.execute(select(case_rules)).all() == []
        assert conn.execute(select(duty_contacts.c.name)).scalars().all() == ["孙值班"]
        actions = conn.execute(select(db.audit_log.c.action).order_by(db.audit_log.c.id)).scalars()
        assert list(actions) == ["duty_contact.add", "case_rule.add", "case_rule.delete"]


def test_the_alerts_command_sends_what_waits(engine, gateway, capsys):
    import argparse

    setup_unit(engine)
    add_evaluation(engine, "kp-01:1", 1, window_id="A01", comment="慢")
    parser = argparse.ArgumentParser(prog="hcp")
    cases_alerts.register(parser.add_subparsers(dest="command"))
    url = engine.url.render_as_string(hide_password=False)
    args = parser.parse_args(["cases", "alerts", "--db", url, "--sender", f"webhook:{gateway.url}"])
    assert args.handler(args) == 0
    assert capsys.readouterr().out == "sent 1, failed 0\n"
    assert [body["case_id"] for body in gateway.bodies] == [1]
