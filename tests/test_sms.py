"""Rating by SMS through the simulated gateway over real HTTP, on SQLite and
PostgreSQL: the invitation after a service event with a phone, replies in
half- and full-width digits and in words, garbage, a 差评 and its reason, a
second reply, a reply after the rating period, and a hostile inbound caller.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import urllib.error
import urllib.request

import pytest
from sqlalchemy import select

from simulators.sms_gateway import SmsGateway
from sync_server import phones, sms
from sync_server import sms_gateways as gateways
from sync_server.schema_citizen import sms_conversations, sms_messages, sms_reasons
from tests.harness import shared_worlds
from tests.test_citizen import PHONE, build, rate, ratings, register, text_of

SECRET = "inbound-secret-1"
OTHER_PHONE = "13900001111"
INVITATION_START = "【临淄区政务服务】您"


# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres


@contextlib.contextmanager
def serving(app):
    """The collector serving HTTP and the simulated gateway beside it."""
    app.tokens = build(app)
    server, thread = shared_worlds.serve_web(app)
    base = f"http://127.0.0.1:{server.server_port}"
    gateway = SmsGateway(base, SECRET).start()
    app.config.update(HCP_SMS_INBOUND_SECRET=SECRET, HCP_SMS_GATEWAY_URL=gateway.url)
    app.gateway = gateway
    try:
        yield app
    finally:
        gateway.stop()
        server.shutdown()
        thread.join(5)


@pytest.fixture
def live(engine_app):
    with serving(engine_app) as app:
        yield app


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def refusing(request, tmp_path_factory):
    """One served world per database for the inbound calls the collector
    refuses (each checks that nothing was stored)."""
    with contextlib.ExitStack() as stack:
        app = stack.enter_context(
            shared_worlds.module_world(request, tmp_path_factory, lambda app: None)
        )
        yield stack.enter_context(serving(app))


def reply(app, text, phone=PHONE) -> str:
    status, answer = app.gateway.relay(phone, text)
    assert status == 200, answer
    return answer["reply"]


def sent_to(app, phone=PHONE) -> list[str]:
    return [m["text"] for m in app.gateway.messages(phone)]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("1", (5, None)),
        ("５", (1, None)),
        (" ３ ", (3, None)),
        ("4 等候时间长", (2, "等候时间长")),
        ("４，材料反复要", (2, "材料反复要")),
        ("5。", (1, None)),
        ("非常满意", (5, None)),
        ("满意", (4, None)),
        ("基本满意", (3, None)),
        ("不满意 态度差", (2, "态度差")),
        ("非常不满意", (1, None)),
        ("12", None),
        ("0", None),
        ("6", None),
        ("好", None),
        ("", None),
        ("   ", None),
        ("hello", None),
    ],
)
def test_replies_are_parsed(text, parsed):
    assert sms.parse(text) == parsed


def test_a_bad_rating_by_sms_and_its_reason(live):
    register(live, "LZ2026112710001", phone=PHONE)
    [invitation] = sent_to(live)
    assert invitation.startswith(INVITATION_START)
    assert "办件号LZ2026112710001" in invitation and "1非常满意" in invitation
    assert reply(live, "你好") == sms.HELP
    assert reply(live, "５") == sms.ASK_REASON  # full width: 非常不满意, no reason yet
    assert reply(live, "<script>x</script>") == sms.BAD_TEXT
    assert reply(live, "3") == sms.ALREADY_ASK
    assert reply(live, "等候时间太长") == sms.REASON_THANKS
    assert reply(live, "1") == sms.ALREADY
    assert reply(live, "garbage") == sms.HELP
    [stored] = ratings(live)
    assert (stored["channel"], stored["stars"], stored["case_no"]) == ("sms", 1, "LZ2026112710001")
    assert stored["reason_owed"] is True and stored["comment"] is None  # never rewritten
    engine = live.extensions["hcp_engine"]
    with engine.connect() as conn:
        assert sms.reasons_of(conn, stored["id"]) == "等候时间太长"
        outcomes = [
            row.outcome
            for row in conn.execute(
                select(sms_messages)
                .where(sms_messages.c.direction == "in")
                .order_by(sms_messages.c.id)
            )
        ]
        dump = repr(conn.execute(select(sms_messages)).all())
        dump += repr(conn.execute(select(sms_conversations)).all())
    assert outcomes == ["stray", "rated", "bad_reason", "second", "reason", "second", "stray"]
    assert PHONE not in dump
    assert sent_to(live)[1:] == [
        sms.HELP, sms.ASK_REASON, sms.BAD_TEXT, sms.ALREADY_ASK, sms.REASON_THANKS,
        sms.ALREADY, sms.HELP,
    ]  # fmt: skip


def test_level_words_and_a_reason_in_one_reply(live):
    register(live, "LZ2026112710002", phone=PHONE)
    register(live, "LZ2026112710003", phone=OTHER_PHONE)
    assert reply(live, "不满意，材料要求反复变") == sms.THANKS
    assert reply(live, "非常满意", OTHER_PHONE) == sms.THANKS
    stored = {r["case_no"]: r for r in ratings(live)}
    assert stored["LZ2026112710002"]["stars"] == 2
    assert stored["LZ2026112710002"]["comment"] == "材料要求反复变"
    assert stored["LZ2026112710002"]["reason_owed"] is False
    assert stored["LZ2026112710003"]["stars"] == 5
    assert reply(live, "2") == sms.ALREADY


def test_a_reply_after_the_period_is_refused_with_a_clear_message(live):
    handled = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    register(live, "LZ2026102810001", handled=handled, phone=PHONE)
    assert reply(live, "1") == "评价期已过：办结之日起5个工作日内可评价，本次回复未计入评价。"
    assert ratings(live) == []


def test_a_reply_after_a_rating_on_another_channel_gets_already_rated(live):
    register(live, "LZ2026112710004", phone=PHONE)
    client = live.test_client()
    done = rate(client, "/r/w/A01", 5, step2={}, case_no="LZ2026112710004")
    assert text_of(done, "notice") == "感谢您的评价！"
    assert reply(live, "4 太慢") == sms.ALREADY
    assert [r["channel"] for r in ratings(live)] == ["qr_window"]


def test_a_number_never_invited(live):
    assert reply(live, "1", "13700000000") == sms.NOT_INVITED
    assert ratings(live) == []


def test_invitations_wait_while_the_gateway_is_down(live):
    up = live.config["HCP_SMS_GATEWAY_URL"]
    live.config["HCP_SMS_GATEWAY_URL"] = "http://127.0.0.1:9"  # nothing listens there
    register(live, "LZ2026112710005", phone=PHONE)
    register(live, "LZ2026112710007", phone=PHONE)
    engine = live.extensions["hcp_engine"]
    c = sms_conversations.c
    with engine.connect() as conn:
        assert conn.execute(select(c.state)).scalars().all() == ["queued", "queued"]
    assert sent_to(live) == []
    live.config["HCP_SMS_GATEWAY_URL"] = up
    register(live, "LZ2026112710008", phone=OTHER_PHONE)  # its request sends the older ones too
    assert len(sent_to(live)) == 2 and len(sent_to(live, OTHER_PHONE)) == 1
    with engine.connect() as conn:
        assert set(conn.execute(select(c.state)).scalars()) == {"invited"}
    with live.app_context():
        assert sms.deliver(engine, gateways.HttpGateway(up), phones.app_key()) == 0


def _post(live, body: bytes, signature: str | None):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-HCP-Signature"] = signature
    base = live.gateway.collector_url
    request = urllib.request.Request(base + "/sms/inbound", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize(
    ("body", "signed", "status", "error"),
    [
        (b'{"from":"13812345678","text":"1"}', False, 401, "X-HCP-Signature: does not verify"),
        (b'{"from":"13812345678","text":"1"}', "0" * 64, 401, "X-HCP-Signature: does not verify"),
        (b"not json", True, 400, "body: not JSON"),
        (b"[1]", True, 400, "body: must be an object"),
        (b'{"from":1,"text":"1"}', True, 400, "from: must be a string"),
        (b'{"from":"<script>","text":"1"}', True, 400,
         "phone: not a mobile number or a landline with area code"),
        (json.dumps({"from": PHONE, "text": "x" * 1001}).encode(), True, 400,
         "text: must be a string of at most 1000 characters"),
        (b"{" + b" " * 20000 + b"}", True, 413, "body: larger than 16384 bytes"),
    ],
)  # fmt: skip
def test_a_hostile_inbound_caller_is_refused(refusing, body, signed, status, error):
    signature = gateways.signature(SECRET, body) if signed is True else (signed or None)
    assert _post(refusing, body, signature) == (status, {"error": error})
    with refusing.extensions["hcp_engine"].connect() as conn:
        assert conn.execute(select(sms_messages)).all() == []
        assert conn.execute(select(sms_reasons)).all() == []


def test_inbound_is_off_without_a_secret(live):
    live.config["HCP_SMS_INBOUND_SECRET"] = None
    body = b'{"from":"13812345678","text":"1"}'
    assert _post(live, body, gateways.signature(SECRET, body)) == (
        503,
        {"error": "inbound SMS is not configured (HCP_SMS_INBOUND_SECRET)"},
    )


def test_the_simulated_gateway_runs_as_a_program(live):
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = live.gateway.collector_url
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators.sms_gateway", "--collector", base,
         "--secret", SECRET, "--port", str(port)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = process.stdout.readline()
        assert first == f"simulated SMS gateway (tests and demo only) at http://127.0.0.1:{port}\n"
        live.config["HCP_SMS_GATEWAY_URL"] = f"http://127.0.0.1:{port}"
        register(live, "LZ2026112710006", phone=PHONE)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/reply",
            data=json.dumps({"from": PHONE, "text": "满意"}).encode(),
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.loads(answer.read())["reply"] == sms.THANKS
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/messages?to={PHONE}") as answer:
            texts = [m["text"] for m in json.loads(answer.read())["messages"]]
        assert texts[0].startswith(INVITATION_START) and texts[1:] == [sms.THANKS]
        deadline = time.monotonic() + 5
        while [r["stars"] for r in ratings(live)] != [4] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r["stars"] for r in ratings(live)] == [4]
    finally:
        process.terminate()
        process.wait(10)


def test_the_demo_rates_once_on_every_citizen_channel(tmp_path):
    from hcp.demo import _demo_org, demo_password
    from hcp.service_events import register_demo_events
    from hcp.sim_sms import demo_channels
    from hcp.stack import LocalStack

    with LocalStack(tmp_path, broker="amqtt", web=True, ingest=False) as stack:
        password = demo_password(tmp_path, stack.engine)
        _demo_org(stack.engine)
        register_demo_events(stack.engine)
        try:
            lines = demo_channels(stack, password)
        finally:
            stack.sms_gateway.stop()
        with stack.engine.connect() as conn:
            channels = sorted(conn.exec_driver_sql("SELECT channel FROM evaluations").scalars())
    assert channels == ["paper", "qr_case", "qr_window", "sms", "web"]
    outcomes = [line.split(": ", 1)[1] for line in lines[1:6]]
    assert outcomes[:4] == ["感谢您的评价！"] * 4 and outcomes[4].endswith("已保存。")
    assert "/r/w/" in lines[6] and "/r/c/" in lines[7] and "/reply" in lines[8]


def test_an_invitation_claimed_by_a_delivery_that_died_is_sent_later(live):
    live.config["HCP_SMS_GATEWAY_URL"] = None
    register(live, "LZ2026112710009", phone=PHONE)
    engine = live.extensions["hcp_engine"]
    c = sms_conversations.c
    with engine.begin() as conn:  # as a process killed between claim and send leaves it
        conn.execute(sms_conversations.update().values(state="sending"))
    with live.app_context():
        key = phones.app_key()
    gateway = gateways.HttpGateway(live.gateway.url)
    assert sms.deliver(engine, gateway, key) == 0  # a fresh claim is left alone
    with engine.begin() as conn:
        conn.execute(sms_conversations.update().values(updated_at="2026-01-01T00:00:00.000000Z"))
    assert sms.deliver(engine, gateway, key) == 1
    with engine.connect() as conn:
        assert conn.execute(select(c.state)).scalar() == "invited"
    assert len(sent_to(live)) == 1
