"""The /api/v1 JSON API, as an admin and a viewer would use it, on SQLite and PostgreSQL.

The `engine` fixture (tests/harness/databases.py) runs every test once on a
SQLite file and once on a fresh PostgreSQL database.
"""

from __future__ import annotations

import json
import secrets

import pytest

from protocols import messages
from sync_server import db
from sync_server.ingest import Ingestor
from tests.harness import shared_worlds
from tests.harness.collector import AuthActions
from tests.harness.records import (
    CONTACT,
    add_evaluation,
    batch,
    contact_entry,
    ev_topic,
    set_status,
    signed,
)


@pytest.fixture
def app(engine_app):
    """These tests run the app on each kind of database."""
    return engine_app


@pytest.fixture
def sample(engine):
    """Six ratings at two windows on two days; one carries a contact, one is excluded."""
    add_sample(engine)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def reading(request, tmp_path_factory):
    """One app with the sample per database for the whole module, for the
    many cases that only read (a fresh world costs about half a second);
    `reading.clients` keeps one logged-in client per role. PostgreSQL gets
    its own database, apart from the one the per-test fixtures reset."""

    def build(app):
        add_sample(app.extensions["hcp_engine"])
        app.clients = {}

    with shared_worlds.module_world(request, tmp_path_factory, build) as app:
        yield app


def reader(app, role):
    """A client of the shared app logged in as `role` (once per module)."""
    if role not in app.clients:
        client = app.test_client()
        if role != "anonymous":
            AuthActions(client).login(role)
        app.clients[role] = client
    return app.clients[role]


def add_sample(engine):
    add_evaluation(engine, "kp-01:1", 5, "2026-11-25T01:00:00Z", window_id="A01", staff_id="1001")
    add_evaluation(engine, "kp-01:2", 4, "2026-11-25T02:00:00Z", window_id="A01", staff_id="1001")
    add_evaluation(
        engine,
        "kp-01:3",
        1,
        "2026-11-26T03:00:00Z",
        window_id="A01",
        staff_id="1001",
        tags=json.dumps(["D101"]),
        content_version="demo-1",
        contact=CONTACT,
        sig="ab" * 32,
        case_no="LZ-2026-0001",
        org_id="370305",
    )
    add_evaluation(engine, "kp-02:1", 2, "2026-11-26T04:00:00Z", window_id="B03", staff_id="1003")
    add_evaluation(engine, "kp-02:2", 3, "2026-11-26T04:00:00Z", window_id="B03", channel="kiosk")
    add_evaluation(engine, "kp-02:3", 1, "2026-11-26T05:00:00Z", window_id="B03", excluded=True)


def ids(response):
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["items"]]


# --- listing and filters -------------------------------------------------------


def test_a_viewer_logs_in_and_lists_newest_first(client, sample):
    assert client.get("/api/v1/evaluations").status_code == 401
    AuthActions(client).login("viewer")
    response = client.get("/api/v1/evaluations")
    body = response.get_json()
    assert (body["page"], body["per_page"], body["total"]) == (1, 50, 6)
    # same rated_at: id breaks the tie
    assert ids(response) == ["kp-02:3", "kp-02:1", "kp-02:2", "kp-01:3", "kp-01:2", "kp-01:1"]


def test_an_item_has_its_fields_and_tags_as_a_list(viewer, sample):
    item = viewer.get("/api/v1/evaluations?case_no=LZ-2026-0001").get_json()["items"][0]
    assert item["tags"] == ["D101"]
    assert item["level"] == "非常不满意"
    assert item["bad"] is True
    assert item["excluded"] is False
    assert (item["device_id"], item["seq"], item["window_id"]) == ("kp-01", 3, "A01")
    assert "contact" not in item and "sig" not in item
    other = viewer.get("/api/v1/evaluations?device_id=kp-01&stars=5").get_json()["items"][0]
    assert other["tags"] == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("device_id=kp-01", ["kp-01:3", "kp-01:2", "kp-01:1"]),
        ("window_id=B03", ["kp-02:3", "kp-02:1", "kp-02:2"]),
        ("staff_id=1003", ["kp-02:1"]),
        ("org_id=370305", ["kp-01:3"]),
        ("channel=kiosk", ["kp-02:2"]),
        ("case_no=LZ-2026-0001", ["kp-01:3"]),
        ("case_no=LZ-none", []),
        ("stars=1", ["kp-02:3", "kp-01:3"]),
        ("stars=5&stars=4", ["kp-01:2", "kp-01:1"]),
        ("stars=5,4", ["kp-01:2", "kp-01:1"]),
        ("stars=5,+4&stars=", ["kp-01:2", "kp-01:1"]),
        ("bad=1", ["kp-02:3", "kp-02:1", "kp-01:3"]),
        ("bad=0", ["kp-02:3", "kp-02:1", "kp-02:2", "kp-01:3", "kp-01:2", "kp-01:1"]),
        ("bad=1&stars=2,3", ["kp-02:1"]),
        ("bad=1&window_id=A01", ["kp-01:3"]),
        ("since=2026-11-26", ["kp-02:3", "kp-02:1", "kp-02:2", "kp-01:3"]),
        ("until=2026-11-25", ["kp-01:2", "kp-01:1"]),
        (
            "since=2026-11-25T02:00:00Z&until=2026-11-26T04:00:00Z",
            ["kp-02:1", "kp-02:2", "kp-01:3", "kp-01:2"],
        ),
        ("since=2026-11-26T04:00:01Z", ["kp-02:3"]),
        ("since=2026-11-25&until=2026-11-25", ["kp-01:2", "kp-01:1"]),
        (
            "device_id=&window_id=",
            ["kp-02:3", "kp-02:1", "kp-02:2", "kp-01:3", "kp-01:2", "kp-01:1"],
        ),
        ("lang=en&window_id=A01&stars=4", ["kp-01:2"]),
    ],
)
def test_filters(reading, query, expected):
    assert ids(reader(reading, "viewer").get("/api/v1/evaluations?" + query)) == expected


def test_paging_walks_through_everything_once(viewer, sample):
    seen = []
    for page in (1, 2, 3):
        body = viewer.get(f"/api/v1/evaluations?per_page=2&page={page}").get_json()
        assert (body["page"], body["per_page"], body["total"]) == (page, 2, 6)
        seen += [item["id"] for item in body["items"]]
    assert seen == ids(viewer.get("/api/v1/evaluations"))
    past_the_end = viewer.get("/api/v1/evaluations?per_page=2&page=4").get_json()
    assert (past_the_end["items"], past_the_end["total"]) == ([], 6)


def test_paging_bounds_are_accepted(viewer, sample):
    assert len(ids(viewer.get("/api/v1/evaluations?per_page=500"))) == 6
    assert ids(viewer.get("/api/v1/evaluations?per_page=1&bad=1")) == ["kp-02:3"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("stars=6", "stars: must be integers 1..5"),
        ("stars=0", "stars: must be integers 1..5"),
        ("stars=5,x", "stars: must be integers 1..5"),
        ("stars=-1", "stars: must be integers 1..5"),
        ("stars=4.0", "stars: must be integers 1..5"),
        ("per_page=0", "per_page: must be 1..500"),
        ("per_page=501", "per_page: must be 1..500"),
        ("per_page=ten", "per_page: must be 1..500"),
        ("per_page=-5", "per_page: must be 1..500"),
        ("page=0", "page: must be an integer >= 1"),
        ("page=x", "page: must be an integer >= 1"),
        ("bad=yes", "bad: must be 0 or 1"),
        (
            "channel=fax",
            "channel: must be one of keypad, kiosk, qr_window, qr_case, web, sms, hotline, paper",
        ),
        ("since=2026-13-01", "since: not a calendar date"),
        ("until=2026-02-30", "until: not a calendar date"),
        ("since=26/11/2026", "since: must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)"),
        (
            "until=2026-11-26T08:00:00+08:00",
            "until: must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)",
        ),
        ("since=2026-11-27&until=2026-11-26", "until: is before since"),
        ("device_id=" + "d" * 65, "device_id: longer than 64 characters"),
        ("contact=13800000000", "contact: unknown parameter"),
        ("star=5", "star: unknown parameter"),
        ("page=%C2%B2", "page: must be an integer >= 1"),  # '²' passes str.isdigit()
        (
            "since=%D9%A2%D9%A0%D9%A2%D9%A6-%D9%A1%D9%A1-%D9%A2%D9%A6",  # Arabic-Indic digits
            "since: must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)",
        ),
        ("page=1000001", "page: must be at most 1000000"),
        ("page=" + "9" * 5000, "page: must be at most 1000000"),
        ("per_page=%D9%A3", "per_page: must be 1..500"),  # Arabic-Indic 3
        ("device_id=kp%0001", "device_id: contains a control character"),
        ("window_id=A%0A01", "window_id: contains a control character"),
    ],
)
def test_bad_parameters_are_400_with_the_exact_message(reading, query, message):
    response = reader(reading, "viewer").get("/api/v1/evaluations?" + query)
    assert response.status_code == 400
    assert response.get_json() == {"error": message}


def test_the_contact_never_leaves_through_the_api(admin, sample):
    for path in (
        "/api/v1/evaluations",
        "/api/v1/evaluations?case_no=LZ-2026-0001",
        "/api/v1/evaluations/summary",
        "/api/v1/devices",
    ):
        body = admin.get(path).get_data(as_text=True)
        assert CONTACT not in body, path
        assert '"contact"' not in body, path
        assert "ab" * 32 not in body, path


# --- who may see what --------------------------------------------------------------

PATHS = [
    "/api/v1/evaluations",
    "/api/v1/evaluations/summary",
    "/api/v1/devices",
    "/api/v1/quarantine",
]


@pytest.mark.parametrize(
    ("role", "path", "status", "error"),
    [("anonymous", p, 401, "login required") for p in PATHS]
    + [("viewer", p, 200, None) for p in PATHS[:3]]
    + [("viewer", "/api/v1/quarantine", 403, "not allowed for the role supervisor")]
    + [("admin", p, 200, None) for p in PATHS],
)
def test_access_by_role(reading, role, path, status, error):
    response = reader(reading, role).get(path)
    assert response.status_code == status
    if error:
        assert response.get_json() == {"error": error}


def test_unknown_api_path_is_json_404(admin):
    response = admin.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.get_json() == {"error": "not found"}


# --- summary -------------------------------------------------------------------------


def test_summary_counts_good_bad_and_rate_without_excluded_rows(viewer, sample):
    assert viewer.get("/api/v1/evaluations/summary").get_json() == {
        "total": 5,
        "by_stars": {"1": 1, "2": 1, "3": 1, "4": 1, "5": 1},
        "good": 3,
        "bad": 2,
        "good_rate": 0.6,
        "excluded": 1,
        "repeats": 0,
    }


def test_summary_takes_the_same_filters(viewer, sample):
    body = viewer.get("/api/v1/evaluations/summary?window_id=B03").get_json()
    assert body == {
        "total": 2,
        "by_stars": {"1": 0, "2": 1, "3": 1, "4": 0, "5": 0},
        "good": 1,
        "bad": 1,
        "good_rate": 0.5,
        "excluded": 1,
        "repeats": 0,
    }
    only_good = viewer.get("/api/v1/evaluations/summary?window_id=A01&stars=5,4").get_json()
    assert (only_good["total"], only_good["good_rate"]) == (2, 1.0)


def test_summary_of_nothing_has_no_rate(viewer):
    assert viewer.get("/api/v1/evaluations/summary").get_json() == {
        "total": 0,
        "by_stars": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0},
        "good": 0,
        "bad": 0,
        "good_rate": None,
        "excluded": 0,
        "repeats": 0,
    }


def test_summary_rounds_the_rate(engine, viewer):
    for seq, stars in enumerate([5, 5, 1], start=1):
        add_evaluation(engine, f"kp-09:{seq}", stars, "2026-11-26T08:00:00Z")
    assert viewer.get("/api/v1/evaluations/summary").get_json()["good_rate"] == 0.6667


@pytest.mark.parametrize(
    ("query", "message"),
    [("page=2", "page: unknown parameter"), ("stars=9", "stars: must be integers 1..5")],
)
def test_summary_bad_parameters(reading, query, message):
    response = reader(reading, "viewer").get("/api/v1/evaluations/summary?" + query)
    assert (response.status_code, response.get_json()) == (400, {"error": message})


# --- devices --------------------------------------------------------------------------


@pytest.fixture
def three_devices(engine):
    """kp-01 with a gap and a count mismatch, kp-02 complete, kp-03 silent."""
    db.add_device(engine, "kp-01", "aa" * 32, window_id="A01", name="A01 keypad")
    db.add_device(engine, "kp-02", "bb" * 32, kind="kiosk")
    db.add_device(engine, "kp-03", "cc" * 32)
    # kp-01 sent 1, 2 and 4; 3 is missing
    for seq, stars in ((1, 5), (2, 1), (4, 5)):
        add_evaluation(engine, f"kp-01:{seq}", stars, "2026-11-26T08:00:00Z")
    set_status(
        engine,
        "kp-01",
        messages.status(
            True, fw="1.0", last_seq=4, counts={"1": 1, "2": 0, "3": 0, "4": 1, "5": 2}
        ),
    )
    add_evaluation(engine, "kp-02:1", 3, "2026-11-26T08:00:00Z", channel="kiosk")
    # seq 2 arrived after the device's last status: not a mismatch
    add_evaluation(engine, "kp-02:2", 5, "2026-11-26T08:01:00Z", channel="kiosk")
    set_status(
        engine,
        "kp-02",
        messages.status(False, last_seq=1, counts={"1": 0, "2": 0, "3": 1, "4": 0, "5": 0}),
    )


def test_devices_show_completeness_and_gaps_to_an_admin(admin, three_devices):
    response = admin.get("/api/v1/devices")
    assert "aa" * 32 not in response.get_data(as_text=True)
    assert "key_hex" not in response.get_data(as_text=True)
    by_id = {d["device_id"]: d for d in response.get_json()["items"]}
    assert list(by_id) == ["kp-01", "kp-02", "kp-03"]

    gap = by_id["kp-01"]
    assert (gap["stored"], gap["max_seq"], gap["missing"]) == (3, 4, 1)
    assert gap["counts_stored"] == {"1": 1, "2": 0, "3": 0, "4": 0, "5": 2}
    assert gap["counts_reported"] == {"1": 1, "2": 0, "3": 0, "4": 1, "5": 2}
    assert gap["counts_match"] is False
    assert (gap["kind"], gap["name"], gap["window_id"]) == ("keypad", "A01 keypad", "A01")
    assert gap["status"]["online"] is True and gap["status"]["last_seq"] == 4
    assert gap["status"]["counts"] == {"1": 1, "2": 0, "3": 0, "4": 1, "5": 2}
    assert gap["last_seen"] == "2026-11-26T08:00:00.000000Z"

    whole = by_id["kp-02"]
    assert (whole["stored"], whole["max_seq"], whole["missing"], whole["counts_match"]) == (
        2,
        2,
        0,
        True,
    )
    assert whole["counts_upto_seq"] == 1
    assert whole["counts_stored"] == {"1": 0, "2": 0, "3": 1, "4": 0, "5": 0}
    assert whole["kind"] == "kiosk"

    silent = by_id["kp-03"]
    assert silent["stored"] == 0 and silent["max_seq"] is None and silent["missing"] == 0
    assert silent["status"] is None and silent["counts_reported"] is None
    assert silent["counts_match"] is None


def test_a_viewer_gets_the_verdict_but_never_the_per_level_counts(viewer, three_devices):
    """Counts move by one level per case: watching them would tell each citizen's choice."""
    response = viewer.get("/api/v1/devices")
    assert "counts_reported" not in response.get_data(as_text=True)
    assert "counts_stored" not in response.get_data(as_text=True)
    gap, whole, silent = response.get_json()["items"]
    common = {"org_id": None, "last_seen": "2026-11-26T08:00:00.000000Z"}
    assert gap == {
        **common,
        "device_id": "kp-01",
        "kind": "keypad",
        "name": "A01 keypad",
        "window_id": "A01",
        "created_at": gap["created_at"],
        "status": {"v": 1, "t": "status", "online": True, "fw": "1.0", "last_seq": 4},
        "stored": 3,
        "max_seq": 4,
        "missing": 1,
        "lost_with_board": 0,
        "counts_upto_seq": 4,
        "counts_match": False,
    }
    assert whole == {
        **common,
        "device_id": "kp-02",
        "kind": "kiosk",
        "name": None,
        "window_id": None,
        "created_at": whole["created_at"],
        "status": {"v": 1, "t": "status", "online": False, "last_seq": 1},
        "stored": 2,
        "max_seq": 2,
        "missing": 0,
        "lost_with_board": 0,
        "counts_upto_seq": 1,
        "counts_match": True,
    }
    assert silent == {
        "device_id": "kp-03",
        "kind": "keypad",
        "name": None,
        "org_id": None,
        "window_id": None,
        "created_at": silent["created_at"],
        "last_seen": None,
        "status": None,
        "stored": 0,
        "max_seq": None,
        "missing": 0,
        "lost_with_board": 0,
        "counts_upto_seq": None,
        "counts_match": None,
    }


def test_device_status_never_shows_secret_looking_fields(engine, viewer):
    db.add_device(engine, "kp-05", "dd" * 32)
    set_status(engine, "kp-05", {"online": True, "wifi_password": "hunter22", "api_token": "t"})
    status = viewer.get("/api/v1/devices").get_json()["items"][0]["status"]
    assert status == {"online": True}


def test_devices_takes_no_parameters(viewer):
    response = viewer.get("/api/v1/devices?all=1")
    assert (response.status_code, response.get_json()) == (400, {"error": "all: unknown parameter"})


# --- quarantine -----------------------------------------------------------------------


def test_quarantine_lists_what_ingest_kept_aside_without_the_contact(engine, admin):
    db.add_device(engine, "kp-01", secrets.token_bytes(32).hex())
    other_key = b"another key entirely, not kp-01!"
    record = signed(1, stars=1, key=other_key)
    contacts = [contact_entry("kp-01:1", key=other_key)]
    Ingestor(engine).process(ev_topic(), batch([record], contacts=contacts))
    Ingestor(engine).process("elsewhere/x", b"not json")

    body = admin.get("/api/v1/quarantine").get_json()
    assert body["page"] == 1 and body["per_page"] == 50
    assert body["total"] == len(body["items"]) >= 2
    newest = body["items"][0]
    assert newest["topic"] == "elsewhere/x"
    assert newest["payload"] == "not json"
    assert newest["reason"] == "not an hcp/v1 device topic: 'elsewhere/x'"
    by_reason = {item["reason"]: item for item in body["items"]}
    held = by_reason["sig: does not verify with the key of device 'kp-01'"]
    assert (held["device_id"], held["record_id"], held["topic"]) == ("kp-01", "kp-01:1", ev_topic())
    assert json.loads(held["payload"])["stars"] == 1
    assert CONTACT not in admin.get("/api/v1/quarantine").get_data(as_text=True)

    only_kp01 = admin.get("/api/v1/quarantine?device_id=kp-01&per_page=1").get_json()
    assert only_kp01["total"] == body["total"] - 1
    assert only_kp01["items"][0]["device_id"] == "kp-01"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("per_page=501", "per_page: must be 1..500"),
        ("page=-1", "page: must be an integer >= 1"),
        ("reason=x", "reason: unknown parameter"),
        ("device_id=kp%0001", "device_id: contains a control character"),
        ("device_id=" + "d" * 65, "device_id: longer than 64 characters"),
    ],
)
def test_quarantine_bad_parameters(reading, query, message):
    response = reader(reading, "admin").get("/api/v1/quarantine?" + query)
    assert (response.status_code, response.get_json()) == (400, {"error": message})


def test_the_page_bound_is_accepted(viewer, sample):
    body = viewer.get("/api/v1/evaluations?page=0001000000").get_json()
    assert (body["page"], body["items"], body["total"]) == (1000000, [], 6)


@pytest.mark.parametrize("days", ["%C2%B2", "0", "93", "9" * 5000])
def test_device_days_refuses_odd_day_counts(reading, days):
    response = reader(reading, "viewer").get(f"/api/v1/devices/kp-01/days?days={days}")
    assert (response.status_code, response.get_json()) == (400, {"error": "days: must be 1..92"})


def test_a_device_id_no_database_takes_is_an_unknown_device(viewer):
    response = viewer.get("/api/v1/devices/kp%00/days")
    assert (response.status_code, response.get_json()) == (
        404,
        {"error": "device_id: unknown device 'kp\\x00'"},
    )


def test_odd_stored_values_are_shown_as_they_are(engine, admin):
    """Rows no valid record makes (a level 0, tags that are not a list) still list."""
    add_evaluation(engine, "kp-01:1", 0, "2026-11-26T08:00:00Z", tags="not json")
    add_evaluation(engine, "kp-01:2", 5, "2026-11-26T08:00:00Z", tags='{"a": 1}')
    first, second = admin.get("/api/v1/evaluations").get_json()["items"]
    assert (first["level"], first["bad"], first["tags"]) == (None, None, ["not json"])
    assert (second["level"], second["bad"], second["tags"]) == ("非常满意", False, ['{"a": 1}'])
    summary = admin.get("/api/v1/evaluations/summary").get_json()
    assert (summary["total"], summary["by_stars"]["5"]) == (1, 1)


def test_quarantined_payloads_are_redacted_at_any_depth(engine, admin):
    phone = "+8613912345678"
    payloads = [
        json.dumps({"records": [{"id": "kp-01:1"}], "x": [{"contacts": [{"contact": phone}]}]}),
        json.dumps([[{"phone": phone, "stars": 1}]]),
        "not json " + phone,
    ]
    with engine.begin() as conn:
        for payload in payloads:
            conn.execute(
                db.quarantine.insert().values(
                    received_at=db.utc_now(), topic="t", reason="r", payload=payload
                )
            )
    items = admin.get("/api/v1/quarantine").get_json()["items"]
    assert [item["payload"] for item in items] == [
        "not json +#############",
        '[[{"phone":"[redacted]","stars":1}]]',
        '{"records":[{"id":"kp-01:1"}],"x":[{"contacts":"[redacted]"}]}',
    ]
    assert [(item["payload_bytes"], item["payload_sha256"]) for item in items] == [(None, None)] * 3
