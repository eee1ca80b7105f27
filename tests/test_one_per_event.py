"""One rating per service event, across channels, on SQLite and PostgreSQL.

The first rating of a (case_no, service_no) to reach the store counts; a
later one is refused where the rater is present (web, QR, SMS: "已评价") and,
from a device that was offline or on a paper card, stored, acked and marked
as a repeat that counts nowhere. An appended rating (attempt 2) is allowed
once. A rating is accepted up to 5 working days after the local day the
service was handled, holidays and adjusted working weekends counted.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import secrets
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from device.compat import ticks_ms
from simulators.keypad import SimKeypad
from sync_server import channels, db, figures, org, service_events
from sync_server.ingest import Ingestor
from sync_server.schema_channels import event_ratings, unbound_ratings
from tests.harness import shared_worlds
from tests.harness.broker import assert_access_control
from tests.harness.collector import AuthActions, provision, running_ingest
from tests.harness.records import batch, ev_topic, signed

ITEM = "11370305MB2856093X437030500100101"


def utc(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_org(engine) -> None:
    with engine.begin() as conn:
        if org.get(conn, "units", "hall-ws") is None:
            org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
            org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")
            org.add(conn, "staff", "S1001", "王敏", "hall-ws")


def register(engine, case_no=None, service_no="1", handled_at=None) -> dict:
    """A service event handled at `handled_at` (default ten minutes ago),
    registered as the business system would have at that moment."""
    build_org(engine)
    moment = handled_at or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    body = {
        "case_no": case_no or "LZ" + secrets.token_hex(6).upper(),
        "service_no": service_no,
        "item_code": ITEM,
        "unit_id": "hall-ws",
        "window_id": "A01",
        "staff_id": "S1001",
        "handled_at": utc(moment),
    }
    with engine.begin() as conn:
        event, created = service_events.register(
            conn, body, "api", "test", now=moment + dt.timedelta(minutes=1)
        )
    assert created
    return event


def rate(engine, channel, event, stars=5, **fields) -> str:
    rating = {"channel": channel, "stars": stars, "case_no": event["case_no"], **fields}
    rating.setdefault("service_no", event["service_no"])
    if channel in ("web", "qr_case", "qr_window"):
        rating.setdefault("client", "mobile")
    if channel == "paper":
        rating.setdefault("entered_by", "clerk-ws")
        rating.setdefault("entered_at", utc(dt.datetime.now(dt.UTC)))
        rating.setdefault("card_date", dt.date.today().isoformat())
    with engine.begin() as conn:
        return channels.store_channel_rating(conn, engine, rating)


def refusal(engine, channel, event, **fields) -> channels.Refused:
    with pytest.raises(channels.Refused) as caught:
        rate(engine, channel, event, **fields)
    return caught.value


def current(engine, event) -> dict:
    with engine.connect() as conn:
        return channels.find_event(conn, event["case_no"], event["service_no"])


def marks(engine, event) -> dict:
    """rating id -> (repeat_of, role, late) of every rating tied to the event."""
    ev, r = db.evaluations.c, event_ratings.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(ev.id, ev.repeat_of, r.role, r.late)
            .join(event_ratings, r.rating_id == ev.id)
            .where(r.event_id == event["id"])
        ).all()
    return {row.id: (row.repeat_of, row.role, bool(row.late)) for row in rows}


def count(engine) -> int:
    return db.count_evaluations(engine)


# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres


@pytest.fixture
def zh(engine_app):
    """An app (its settings and the Chinese catalog) around each test."""
    with engine_app.test_request_context("/"):
        yield engine_app


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_app(request, tmp_path_factory):
    """One app per database for the module's cases that only register an event
    of their own (a new case number each) and then read or are refused."""
    with shared_worlds.module_world(request, tmp_path_factory, lambda app: None) as app:
        yield app


@pytest.fixture
def shared(shared_app):
    """The shared app's engine, inside a request of the app (Chinese catalog)."""
    with shared_app.test_request_context("/"):
        yield shared_app.extensions["hcp_engine"]


# --- across the channels the collector serves ------------------------------------------


def test_the_first_rating_counts_and_a_second_where_the_rater_is_present_is_refused(engine, zh):
    event = register(engine)
    first = rate(engine, "qr_case", event, stars=4)
    assert first.startswith("qr_case/") and len(first) == len("qr_case/") + 26
    assert current(engine, event)["rating_id"] == first
    for channel in ("web", "sms", "qr_case", "qr_window"):
        refused = refusal(engine, channel, event, stars=1, comment="想改成差评")
        assert (refused.field, refused.message, refused.key) == (
            "case_no",
            "已评价",
            "already_rated",
        )
        assert str(refused) == "case_no: 已评价"
    assert count(engine) == 1
    assert marks(engine, event) == {first: (None, "first", False)}


def test_the_refusal_is_in_english_on_request(engine, engine_app):
    event = register(engine)
    rate(engine, "web", event, client="pc")
    with engine_app.test_request_context("/?lang=en"):
        refused = refusal(engine, "sms", event)
    assert refused.message == "Already rated"


def test_a_paper_card_of_a_rated_event_is_stored_as_a_repeat(engine, zh):
    event = register(engine)
    first = rate(engine, "sms", event, stars=5)
    card = rate(engine, "paper", event, stars=2, comment="排队太久")
    assert card.startswith("paper/")
    assert marks(engine, event) == {first: (None, "first", False), card: (first, "repeat", False)}
    assert current(engine, event)["rating_id"] == first


def test_a_rating_binds_to_its_event_and_carries_the_event_fields(engine, zh):
    event = register(engine)
    record_id = rate(engine, "web", event, stars=3, client="pc")
    with engine.connect() as conn:
        row = conn.execute(select(db.evaluations).where(db.evaluations.c.id == record_id)).one()
    assert (row.case_no, row.service_no, row.item_code, row.window_id) == (
        event["case_no"], "1", ITEM, "A01",
    )  # fmt: skip
    assert (row.case_staff_id, row.case_org_id, row.handled_at) == (
        "S1001", "hall-ws", event["handled_at"],
    )  # fmt: skip
    assert (row.origin, row.clock, row.attempt, row.repeat_of) == ("citizen", "ntp", 1, None)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"stars": None}, "stars: is required"),
        ({"stars": 6}, "stars: must be an integer 1..5, got 6"),
        ({"stars": 1}, "tags: a 差评 needs a reason: at least one tag or a comment"),
        ({"stars": 2, "comment": "   "}, "tags: a 差评 needs a reason: at least one tag or a comment"),
        ({"comment": "很" * 501}, "comment: longer than 500 characters"),
        ({"comment": "好\x00"}, "comment: contains a control character"),
        ({"tags": ["NOPE"]}, "tags: unknown tag 'NOPE' in version hcp-demo-1"),
        ({"stars": 5, "tags": ["H201"]}, "tags: tag 'H201' is not a tag of level 5"),
        ({"case_no": "LZ-NO-SUCH-CASE"}, "case_no: no service event with this case number"),
        ({"case_no": None}, "case_no: is required on a web rating"),
        ({"window_id": "B01"}, "window_id: not the window_id of case {case_no}"),
        ({"channel": "keypad"}, "channel: must be one of web, qr_window, qr_case, sms, paper"),
        ({"score": 5}, "score: unknown field"),
        ({"id": "sms/abc"}, "id: must be web/<1..64 of A-Z a-z 0-9 - _ .>"),
        ({"attempt": 3}, "attempt: must be 1 (first rating) or 2 (appended rating)"),
    ],
)  # fmt: skip
def test_bad_ratings_are_refused_by_field_and_nothing_is_stored(shared, fields, error):
    event = register(shared)
    rating = {"channel": "web", "client": "mobile", "stars": 4, "case_no": event["case_no"]}
    rating.update(fields)
    with shared.begin() as conn, pytest.raises(channels.Refused) as caught:
        channels.store_channel_rating(conn, shared, {k: v for k, v in rating.items()
                                                     if v is not None})  # fmt: skip
    assert str(caught.value) == error.format(case_no=event["case_no"])
    assert count(shared) == 0
    assert current(shared, event)["rating_id"] is None


def test_a_bad_rating_by_sms_owes_its_reason_instead(engine, zh):
    event = register(engine)
    record_id = rate(engine, "sms", event, stars=1)
    with engine.connect() as conn:
        owed = conn.execute(
            select(db.evaluations.c.reason_owed).where(db.evaluations.c.id == record_id)
        ).scalar()
    assert owed is True


def test_a_static_window_qr_rating_without_a_case_is_stored_unbound(engine, zh):
    build_org(engine)
    record_id = rate(engine, "qr_window", {"case_no": None, "service_no": None}, window_id="A01")
    with engine.connect() as conn:
        row = conn.execute(select(db.evaluations).where(db.evaluations.c.id == record_id)).one()
    assert (row.window_id, row.case_no, row.repeat_of) == ("A01", None, None)


# --- appended ratings ------------------------------------------------------------------


def test_an_appended_rating_is_allowed_once(engine, zh):
    event = register(engine)
    refused = refusal(engine, "web", event, attempt=2)
    assert (refused.key, refused.message) == ("not_rated", "该服务尚无评价，无法追加评价")
    first = rate(engine, "web", event, stars=2, comment="材料退回三次")
    appended = rate(engine, "web", event, stars=4, attempt=2, comment="已整改，满意")
    with engine.connect() as conn:
        follows = conn.execute(
            select(db.evaluations.c.follows).where(db.evaluations.c.id == appended)
        ).scalar()
    assert follows == first
    assert current(engine, event)["appended_id"] == appended
    refused = refusal(engine, "sms", event, stars=5, attempt=2)
    assert (refused.key, refused.message) == ("already_rated", "已评价")
    # a second appended rating from a device that was offline: stored, a repeat
    late = Ingestor(engine)
    db.add_device(engine, "kp-01", "00" * 32)
    record = signed(1, 5, case_no=event["case_no"], service_no="1", attempt=2, follows=first)
    outcome = late.process(ev_topic(), batch([record]))
    assert outcome.stored == [1]
    assert marks(engine, event) == {
        first: (None, "first", False),
        appended: (None, "appended", False),
        "kp-01:1": (appended, "repeat", False),
    }


def test_an_appended_rating_that_names_only_what_it_follows_is_tied(engine, zh):
    event = register(engine)
    first = rate(engine, "qr_case", event, stars=1, comment="态度差")
    db.add_device(engine, "kp-01", "00" * 32)
    record = signed(1, 3, attempt=2, follows=first)  # no case number on the keypad
    assert Ingestor(engine).process(ev_topic(), batch([record])).stored == [1]
    assert current(engine, event)["appended_id"] == "kp-01:1"
    assert marks(engine, event)["kp-01:1"] == (None, "appended", False)


# --- the rating period: 5 working days, holidays and adjusted weekends -------------------

# 2026: National Day Oct 1-7 (Thu-Wed), Oct 10 (Sat) an adjusted working day
# (chinese_calendar 1.11). Handled Wed Sep 30: Oct 8, 9, 10, 12, 13 are the
# five working days, so the period ends Tue Oct 13 (Oct 7 by weekdays alone).
NATIONAL_DAY_CASES = [
    ("2026-10-09T10:00:00+08:00", None),
    ("2026-10-13T23:59:00+08:00", None),
    ("2026-10-14T00:00:00+08:00", "period_over"),
]


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


@pytest.mark.parametrize(("now", "verdict"), NATIONAL_DAY_CASES)
def test_the_period_runs_over_national_day_and_counts_the_working_saturday(shared, now, verdict):
    event = register(shared, handled_at=at("2026-09-30T16:30:00+08:00"))
    assert channels.period_end(None, event) == dt.date(2026, 10, 13)
    with shared.connect() as conn:
        assert channels.check_rateable(conn, event, at(now)) == verdict


def test_the_local_day_decides_not_the_utc_day(shared):
    # 2026-09-30 23:30 in Linzi is still Sep 30 (15:30 UTC); 00:30 on Oct 8 is Oct 8
    late_evening = register(shared, handled_at=at("2026-09-30T23:30:00+08:00"))
    assert channels.period_end(None, late_evening) == dt.date(2026, 10, 13)
    after_holiday = register(shared, handled_at=at("2026-10-08T00:30:00+08:00"))
    # Oct 9, 10 (Sat, working), 12, 13, 14
    assert channels.period_end(None, after_holiday) == dt.date(2026, 10, 14)


def test_the_period_is_a_setting(engine, engine_app):
    event = register(engine, handled_at=at("2026-09-30T16:30:00+08:00"))
    engine_app.config["HCP_RATING_PERIOD_WORKING_DAYS"] = 2
    with engine_app.test_request_context("/"):
        assert channels.period_end(None, event) == dt.date(2026, 10, 9)
        assert channels.refusal_text("period_over") == "评价期已过：办结之日起2个工作日内可评价"


def test_a_rating_after_the_period_is_refused_where_the_rater_is_present(engine, zh):
    event = register(engine, handled_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=40))
    refused = refusal(engine, "sms", event)
    assert (refused.key, str(refused)) == (
        "period_over",
        "case_no: 评价期已过：办结之日起5个工作日内可评价",
    )
    assert count(engine) == 0


def test_a_device_record_made_after_the_period_is_stored_and_marked_late(engine, zh):
    event = register(engine, handled_at=at("2026-09-30T16:30:00+08:00"))
    db.add_device(engine, "kp-01", "00" * 32)
    on_time = signed(1, 4, case_no=event["case_no"], service_no="1",
                     rated_at=utc(at("2026-10-13T17:00:00+08:00")))  # fmt: skip
    outcome = Ingestor(engine).process(ev_topic(), batch([on_time]))
    assert outcome.stored == [1]
    assert marks(engine, event) == {"kp-01:1": (None, "first", False)}

    other = register(engine, handled_at=at("2026-09-30T16:30:00+08:00"))
    too_late = signed(2, 4, case_no=other["case_no"], service_no="1",
                      rated_at=utc(at("2026-10-14T09:00:00+08:00")))  # fmt: skip
    outcome = Ingestor(engine).process(ev_topic(), batch([too_late], 2))
    assert outcome.stored == [2], "a device always gets its ack"
    assert marks(engine, other) == {"kp-01:2": (None, "first", True)}


# --- a late keypad record from an offline device, through the real MQTT ingest -----------


def test_an_offline_keypads_late_record_is_stored_acked_and_a_repeat_out_of_figures(
    secured_broker, engine, engine_app, tmp_path
):
    broker = secured_broker  # Mosquitto with access control on, amqtt open
    url = engine.url.render_as_string(hide_password=False)
    event = register(engine)
    key_hex = secrets.token_hex(32)
    provision(broker, engine, "kp-09", key_hex, window_id="A01")
    with running_ingest(broker, tmp_path, "collector-one-per-event", url) as service:
        assert_access_control(broker, ("kp-09", key_hex))
        keypad = SimKeypad(
            "kp-09", key_hex, broker.host, broker.port, str(tmp_path / "kp-09")
        ).start()
        try:
            keypad.network.link_up = False  # the village point's network is down
            case = {"case_no": event["case_no"], "service_no": "1", "item_code": ITEM,
                    "handled_at": event["handled_at"], "timeout_s": 30}  # fmt: skip
            assert keypad.call(lambda d: d.app.start_case(case, ticks_ms()))
            keypad.rate(5)
            assert keypad.pending() == 1
            # meanwhile the citizen rated the same service on the web
            with engine_app.test_request_context("/"):
                web = rate(engine, "web", event, stars=1, comment="等了一个小时")
            keypad.network.link_up = True
            assert keypad.wait_drained(20), "the late record is acked"
            assert keypad.errors == []
        finally:
            keypad.stop()
        assert service.ingestor is not None
    stored = marks(engine, event)
    assert stored == {web: (None, "first", False), "kp-09:1": (web, "repeat", False)}
    with engine.connect() as conn:
        row = conn.execute(
            select(db.evaluations.c.stars, db.evaluations.c.case_no).where(
                db.evaluations.c.id == "kp-09:1"
            )
        ).one()
    assert tuple(row) == (5, event["case_no"])  # stored as the citizen gave it
    with engine.connect() as conn:
        by_channel = figures.totals(conn, "channel", None, None, rate_stars=(5, 4, 3))
    assert {channel: row["valid"] for channel, row in by_channel.items()} == {"web": 1}
    client = engine_app.test_client()
    AuthActions(client).login("admin")
    listed = client.get(f"/api/v1/evaluations?case_no={event['case_no']}").get_json()
    assert sorted((item["id"], item["repeat_of"]) for item in listed["items"]) == sorted(
        [(web, None), ("kp-09:1", web)]
    )


def test_a_repeat_is_out_of_the_summary(engine, engine_app):
    event = register(engine)
    with engine_app.test_request_context("/"):
        web = rate(engine, "web", event, stars=1, comment="等了一个小时")
    db.add_device(engine, "kp-01", "00" * 32)
    record = signed(1, 5, case_no=event["case_no"], service_no="1")
    assert Ingestor(engine).process(ev_topic(), batch([record])).stored == [1]
    assert marks(engine, event)["kp-01:1"] == (web, "repeat", False)
    client = engine_app.test_client()
    AuthActions(client).login("admin")
    summary = client.get("/api/v1/evaluations/summary").get_json()
    assert (summary["total"], summary["by_stars"]["1"], summary["by_stars"]["5"]) == (1, 1, 0)
    assert summary["repeats"] == 1


# --- whatever order and duplication: exactly one counts ----------------------------------

EXAMPLES = 60 if os.environ.get("HCP_LONG") == "1" else 15  # make test-long runs more
SEQS = itertools.count(1000)  # the keypads' seqs, new in every example
DELIVERIES = st.lists(
    st.tuples(
        st.sampled_from(["kp-a", "kp-b", "paper", "web", "sms"]),
        st.integers(1, 3),
        st.sampled_from([1, 1, 2]),  # attempt: a third are appended ratings
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(deliveries=DELIVERIES, group=st.integers(1, 3), registered_after=st.integers(0, 8))
def test_whatever_order_and_duplication_exactly_one_counts(
    engine, zh, deliveries, group, registered_after
):
    """Each delivery is (source, n, attempt): a keypad's record number n
    (sent again when it repeats, in batches of `group`), a paper card, or a
    web/SMS rating (refused once the event is rated, or its appended rating
    given). The business system registers the event after
    `registered_after` deliveries (keypad records may come first; the
    collector's own channels need the event). Exactly one rating counts as
    the event's; at most one appended rating counts beside it; everything
    else stored is a repeat of one of them."""
    event = {"case_no": "LZ" + secrets.token_hex(6).upper(), "service_no": "1"}
    registered = None
    ingestor = Ingestor(engine)
    build_org(engine)
    for device_id in ("kp-a", "kp-b"):
        if device_id not in db.device_ids(engine):
            db.add_device(engine, device_id, "00" * 32)
    made: dict = {}
    pending: dict = {"kp-a": [], "kp-b": []}
    accepted = set()

    def flush(device_id):
        if pending[device_id]:
            outcome = ingestor.process(ev_topic(device_id), batch(pending[device_id], 1, device_id))
            accepted.update(f"{device_id}:{s}" for s in outcome.stored)
            pending[device_id] = []

    for index, (source, n, attempt) in enumerate(deliveries):
        if index == registered_after:
            registered = register(engine, event["case_no"])
        if source.startswith("kp-"):
            if (source, n) not in made:
                made[(source, n)] = signed(next(SEQS), n + 2, device_id=source, attempt=attempt,
                                           case_no=event["case_no"], service_no="1")  # fmt: skip
            pending[source].append(made[(source, n)])
            if len(pending[source]) >= group:
                flush(source)
            continue
        try:
            accepted.add(rate(engine, source, event, stars=n + 2, attempt=attempt))
        except channels.Refused as exc:
            if registered is None:
                assert str(exc) == "case_no: no service event with this case number"
            else:
                assert source != "paper" and exc.key in ("already_rated", "not_rated")
    for device_id in pending:
        flush(device_id)
    if registered is None:
        registered = register(engine, event["case_no"])
    tied = marks(engine, registered)
    assert set(tied) == accepted
    counting = {role: rid for rid, (repeat_of, role, _late) in tied.items() if repeat_of is None}
    assert len(counting) == len([r for r in tied.values() if r[0] is None])  # one per role
    # nothing stored (only refused ratings) leaves the event unrated
    assert set(counting) in ({"first"}, {"first", "appended"}) or not accepted
    now = current(engine, registered)
    assert (now["rating_id"], now["appended_id"]) == (
        counting.get("first"),
        counting.get("appended"),
    )
    assert all(r[0] in counting.values() for r in tied.values() if r[0] is not None)


# --- two at once -------------------------------------------------------------------------


def test_a_rating_stored_while_another_waits_to_commit_leaves_one_counting(engine, zh):
    """A web rating's transaction is open (bound, not committed) when an
    offline keypad's record of the same event arrives: the ingest waits for
    it and stores its record as a repeat, never binding the event again."""
    event = register(engine)
    db.add_device(engine, "kp-01", "00" * 32)
    record = signed(1, 5, case_no=event["case_no"], service_no="1")
    outcome = {}

    def keypad_arrives():
        outcome["ingest"] = Ingestor(engine).process(ev_topic(), batch([record]))

    with engine.begin() as conn:
        web = channels.store_channel_rating(
            conn,
            engine,
            {"channel": "web", "client": "pc", "stars": 3, "case_no": event["case_no"]},
        )
        arriving = threading.Thread(target=keypad_arrives)
        arriving.start()
        arriving.join(1.0)  # it waits for this transaction (or has not got that far yet)
    arriving.join(30)
    assert outcome["ingest"].stored == [1]
    assert current(engine, event)["rating_id"] == web
    assert marks(engine, event) == {web: (None, "first", False), "kp-01:1": (web, "repeat", False)}


def test_the_event_list_shows_every_tied_rating_and_which_counts(engine, engine_app):
    from tests.test_service_events import schema_problems

    event = register(engine, handled_at=at("2026-09-30T16:30:00+08:00"))
    with engine_app.test_request_context("/"):
        db.add_device(engine, "kp-01", "00" * 32)
        late = signed(1, 4, case_no=event["case_no"], service_no="1",
                      rated_at=utc(at("2026-10-14T09:00:00+08:00")))  # fmt: skip
        assert Ingestor(engine).process(ev_topic(), batch([late])).stored == [1]
        card = rate(engine, "paper", event, stars=5, card_date="2026-10-09")
    client = engine_app.test_client()
    AuthActions(client).login("admin")
    response = client.get(f"/api/v1/service-events?case_no={event['case_no']}")
    (item,) = response.get_json()["items"]
    assert (item["rating_id"], item["rate_until"]) == ("kp-01:1", "2026-10-13")
    assert item["ratings"] == [
        {"rating_id": "kp-01:1", "role": "first", "late": True},
        {"rating_id": card, "role": "repeat", "late": False},
    ]
    assert schema_problems(engine_app, response, "/api/v1/service-events", "get", 200) == []


def test_a_window_rating_of_an_event_registered_without_a_window_keeps_its_window(engine, zh):
    build_org(engine)
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    body = {"case_no": "LZ2026112700777", "service_no": "1", "item_code": ITEM,
            "unit_id": "hall-ws", "handled_at": utc(moment)}  # fmt: skip
    with engine.begin() as conn:
        event, _created = service_events.register(conn, body, "api", "test")
    record_id = rate(engine, "qr_window", event, window_id="A01", client="mobile")
    with engine.connect() as conn:
        row = conn.execute(select(db.evaluations).where(db.evaluations.c.id == record_id)).one()
    assert (row.window_id, row.case_no, row.case_org_id) == ("A01", "LZ2026112700777", "hall-ws")
    assert current(engine, event)["rating_id"] == record_id


# --- ratings that come before their event --------------------------------------------------


def test_keypad_records_before_their_event_are_bound_when_it_is_registered(engine, zh):
    build_org(engine)
    db.add_device(engine, "kp-01", "00" * 32)
    db.add_device(engine, "kp-02", "00" * 32)
    case = {"case_no": "LZ2026112700555", "service_no": "1"}
    first = Ingestor(engine).process(ev_topic(), batch([signed(1, 4, **case)]))
    second = Ingestor(engine).process(
        ev_topic("kp-02"), batch([signed(1, 2, device_id="kp-02", **case)], 1, "kp-02")
    )
    assert (first.stored, second.stored) == ([1], [1])
    with engine.connect() as conn:
        repeats = dict(conn.execute(select(db.evaluations.c.id, db.evaluations.c.repeat_of)).all())
    assert repeats == {"kp-01:1": None, "kp-02:1": "kp-01:1"}  # one counts before the event too
    event = register(engine, case["case_no"])
    assert event["rating_id"] == "kp-01:1"
    assert current(engine, event)["rating_id"] == "kp-01:1"
    assert marks(engine, event) == {
        "kp-01:1": (None, "first", False),
        "kp-02:1": ("kp-01:1", "repeat", False),
    }
    refused = refusal(engine, "web", event)
    assert refused.key == "already_rated"
    with engine.connect() as conn:
        left = conn.execute(select(unbound_ratings.c.rating_id)).scalars().all()
    assert left == []


def test_a_keypad_record_arriving_while_its_event_is_being_registered(engine, zh):
    """The registration's transaction is open when the record comes: the
    ingest waits and binds the record to the event, or the event binds it."""
    build_org(engine)
    db.add_device(engine, "kp-01", "00" * 32)
    case_no = "LZ2026112700556"
    outcome = {}

    def keypad_arrives():
        record = signed(1, 5, case_no=case_no, service_no="1")
        outcome["ingest"] = Ingestor(engine).process(ev_topic(), batch([record]))

    moment = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    body = {"case_no": case_no, "service_no": "1", "item_code": ITEM, "unit_id": "hall-ws",
            "window_id": "A01", "handled_at": utc(moment)}  # fmt: skip
    with engine.begin() as conn:
        event, _created = service_events.register(conn, body, "api", "test")
        arriving = threading.Thread(target=keypad_arrives)
        arriving.start()
        arriving.join(1.0)
    arriving.join(30)
    assert outcome["ingest"].stored == [1]
    assert current(engine, event)["rating_id"] == "kp-01:1"
    assert marks(engine, event) == {"kp-01:1": (None, "first", False)}
