"""No page or API route can be broken by what is in the database.

Hypothesis fills the store with hostile-but-storable content: ratings whose
every text field is arbitrary Unicode within protocols.record.validate's
bounds, contacts in db.contacts, device statuses that are any text at all
(not JSON, huge numbers, deep nesting, wrong types), quarantine rows with
any payload and a channel -> pf table with any rows. Then every GET route of
the app, found in app.url_map so that a new route is covered without editing
this file, is fetched as the admin and as the viewer: no 500, and the
contact never appears.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import string
from urllib.parse import urlencode

import pytest
from flask import url_for
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from protocols.levels import CHANNELS, CLIENTS, DEVICE_CHANNELS
from protocols.record import (
    CLOCKS,
    CODE_FIELDS,
    MAX_CODE,
    MAX_SEQ,
    MAX_TAGS,
    MAX_TEXT,
    MAX_UPTIME_MS,
    PAPER_FIELDS,
    WEB_CHANNELS,
    validate,
)
from sync_server import db
from tests.harness.collector import AuthActions
from tests.harness.records import add_evaluation

# --- what a valid record may carry ------------------------------------------------

# storable text: no control character but tab and line breaks where allowed,
# no lone surrogate (protocols.record.text_problem)
_CONTROL = [chr(code) for code in range(32)] + ["\x7f"]
LINE = st.characters(blacklist_categories=("Cs",), blacklist_characters=_CONTROL)
MULTILINE = st.one_of(LINE, st.sampled_from("\t\n\r"))
WORD = string.ascii_letters + string.digits


def text(limit, alphabet=LINE):
    return st.text(alphabet, min_size=1, max_size=limit)


def codes(limit, extra="-_."):
    return st.text(WORD + extra, min_size=1, max_size=limit)


def utc_times():
    # the calendar's ends first: 9999-12-31 late is past its end in Linzi
    ends = st.sampled_from(("1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z"))
    return ends | st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59)).map(
        lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    )


DEVICE_IDS = codes(32, "-_")
OPTIONAL_CODES = tuple(field for field in CODE_FIELDS if field not in PAPER_FIELDS)


@st.composite
def records(draw, device_ids):
    channel = draw(st.sampled_from(CHANNELS))
    rec = {
        "stars": draw(st.integers(1, 5)),
        "channel": channel,
        "rated_at": draw(utc_times()),
        "clock": draw(st.sampled_from(CLOCKS)),
        "origin": "staff_entry" if channel == "paper" else "citizen",
        "attempt": 1,
    }
    if channel in DEVICE_CHANNELS:
        rec["device_id"] = draw(st.sampled_from(device_ids))
        rec["seq"] = draw(st.integers(1, MAX_SEQ))
        rec["id"] = f"{rec['device_id']}:{rec['seq']}"
        if draw(st.booleans()):
            rec["boot_id"] = draw(text(32))
            rec["uptime_ms"] = draw(st.integers(0, MAX_UPTIME_MS))
    else:
        rec["id"] = f"{channel}/{draw(codes(64))}"
    if channel == "paper":
        rec.update(
            entered_by=draw(text(MAX_CODE)),
            entered_at=draw(utc_times()),
            card_date=draw(utc_times())[:10],
        )
    if channel == "web" or (channel in WEB_CHANNELS and draw(st.booleans())):
        rec["client"] = draw(st.sampled_from(CLIENTS))
    for field in OPTIONAL_CODES:
        if draw(st.booleans()):
            rec[field] = draw(text(MAX_CODE))
    if draw(st.booleans()):
        rec["comment"] = draw(text(MAX_TEXT, MULTILINE))
    if draw(st.booleans()):
        rec["handled_at"] = draw(utc_times())
    if draw(st.booleans()):
        rec["content_version"] = draw(text(32))
        rec["tags"] = draw(st.lists(codes(16), max_size=MAX_TAGS, unique=True))
    if draw(st.booleans()):
        rec["attempt"] = 2
        rec["follows"] = draw(st.sampled_from(device_ids)) + ":" + str(draw(st.integers(1, 99)))
        assume(rec["follows"] != rec["id"])
    if draw(st.booleans()):
        rec["sig"] = draw(st.text("0123456789abcdef", min_size=64, max_size=64))
    return validate(rec)


# --- what else the database may hold ------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63)
    | st.floats()
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
ODD_STATUSES = (
    '{"online": true, "last_seq": 99999999999999999999999999}',
    '{"online": true, "last_seq": -1, "counts": {"1": 1e400}}',
    '{"last_seq": ' + "9" * 5000 + "}",
    '{"last_seq": NaN, "counts": {"1": Infinity}}',
    '{"last_seq": 1e400}',
    '{"last_seq": true, "counts": [1, 2, 3]}',
    '{"counts": {"1": "one", "5": null}, "online": "maybe"}',
    "[" * 100_000 + "]" * 100_000,
    '{"a": ' * 2000 + "1" + "}" * 2000,
    '{"a": ' * 60 + "1" + "}" * 60,
    "not json at all",
    "null",
    "42",
    '"a string"',
)
STATUS_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "online": JSON_VALUES,
        "last_seq": st.integers() | JSON_VALUES,
        "counts": st.dictionaries(st.sampled_from("123456x"), st.integers() | JSON_VALUES)
        | JSON_VALUES,
        "fw": JSON_VALUES,
        "queue": JSON_VALUES,
        "wifi_password": JSON_VALUES,
    },
)
STATUSES = st.one_of(
    st.none(),
    st.sampled_from(ODD_STATUSES),
    st.text(LINE, max_size=200),
    STATUS_FIELDS.map(json.dumps),
    JSON_VALUES.map(json.dumps),
)
CONTACTS = st.from_regex(r"\+861[3-9][0-9]{9}", fullmatch=True)


def contact_payloads(contact):
    """Quarantined payloads that carry the contact where a device would put it."""
    key = st.sampled_from(("contact", "phone", "mobile", "Contact"))
    nested = st.recursive(
        st.builds(lambda k: {k: contact}, key)
        | st.builds(lambda k: {"contacts": [{"id": "kp-01:1", k: contact}]}, key),
        lambda children: (
            st.lists(children, min_size=1, max_size=2)
            | st.dictionaries(st.text(max_size=8), children, min_size=1, max_size=2)
        ),
        max_leaves=4,
    )
    return st.one_of(
        nested.map(json.dumps),
        st.builds(lambda a, b: a + contact + b, st.text(max_size=40), st.text(max_size=40)),
    )


@st.composite
def hostile_content(draw):
    device_ids = draw(st.lists(DEVICE_IDS, min_size=1, max_size=3, unique=True))
    contact = draw(CONTACTS)
    devices = [
        {
            "device_id": device_id,
            "kind": draw(st.sampled_from(DEVICE_CHANNELS) | text(16)),
            "name": draw(st.none() | text(200)),
            "org_id": draw(st.none() | text(64)),
            "window_id": draw(st.none() | text(64)),
            "last_seen": draw(st.none() | utc_times() | text(32)),
            "status": draw(STATUSES),
        }
        for device_id in device_ids
    ]
    # one device id the records use but the devices table does not know
    ratings = draw(
        st.lists(
            records([*device_ids, "ghost-01"]),
            max_size=8,
            unique_by=lambda rec: rec["id"],
        )
    )
    quarantined = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "topic": st.text(LINE, max_size=100),
                    "device_id": st.none() | st.sampled_from(device_ids) | text(64),
                    "record_id": st.none() | text(100),
                    "reason": st.text(LINE, max_size=200),
                    "payload": st.text(LINE, max_size=300)
                    | JSON_VALUES.map(json.dumps)
                    | contact_payloads(contact),
                    "payload_bytes": st.none() | st.integers(0, 2**31 - 1),
                    "payload_sha256": st.none()
                    | st.text("0123456789abcdef", min_size=64, max_size=64),
                }
            ),
            max_size=4,
        )
    )
    # the pf table as any writer may have left it (pf_map.save refuses these)
    pf_rows = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "channel": st.sampled_from(CHANNELS) | text(16),
                    "client": st.sampled_from(("", *CLIENTS)) | st.text(LINE, max_size=8),
                    "pf": st.none() | st.integers(-32768, 32767),
                    "updated_by": st.none() | text(64),
                    "updated_at": st.none() | utc_times() | text(32),
                }
            ),
            max_size=6,
            unique_by=lambda row: (row["channel"], row["client"]),
        )
    )
    content = {
        "pf_map": pf_rows,
        "devices": devices,
        "ratings": ratings,
        "quarantined": quarantined,
        "excluded": draw(st.lists(st.booleans(), min_size=len(ratings), max_size=len(ratings))),
    }
    # the contact must not be part of anything else, or finding it proves nothing
    assume(contact not in json.dumps(content, ensure_ascii=False))
    return contact, content


# --- filling the store and walking the routes --------------------------------------------


# what an example leaves in place: the people and the organisation
KEEP = {"users", "org_units", "windows", "staff", "service_items", "placements",
        "tag_versions", "content_tags"}  # fmt: skip


def fill(engine, contact, content):
    with engine.begin() as conn:
        # every table the last example filled, the features' own included
        # (figures, cases, the outbox, bindings), so each example starts empty
        for table in reversed(db.metadata.sorted_tables):
            if table.name not in KEEP:
                conn.execute(table.delete())
        for row in content["pf_map"]:
            conn.execute(db.pf_map.insert().values(**row))
        for device in content["devices"]:
            conn.execute(
                db.devices.insert().values(
                    key_hex="ab" * 32, created_at="2026-11-26T00:00:00.000000Z", **device
                )
            )
        for row in content["quarantined"]:
            conn.execute(db.quarantine.insert().values(received_at=db.utc_now(), **row))
    for rec, excluded in zip(content["ratings"], content["excluded"], strict=True):
        fields = {k: v for k, v in rec.items() if k not in ("id", "stars", "rated_at")}
        if "tags" in fields:
            fields["tags"] = json.dumps(fields["tags"])
        add_evaluation(
            engine,
            rec["id"],
            rec["stars"],
            rec["rated_at"],
            contact=contact,
            excluded=excluded,
            **fields,
        )


# values for the URL parameters routes take; a route with a new kind of
# parameter fails here until the test learns how to fill it
def parameter_values(name, content):
    if name == "device_id":
        return [device["device_id"] for device in content["devices"]] + ["kp-unknown"]
    if name == "record_id":
        return [rec["id"] for rec in content["ratings"][:2]] + ["kp-unknown:1"]
    if name == "unit_id":  # the district is seeded on first start
        return ["370305", "unit-unknown"]
    if name == "what":
        return ["windows"]
    if name == "code":  # no window or staff member exists in this content
        return ["code-unknown"]
    if name == "view":  # every figures view (sync_server/analytics.py)
        from sync_server.analytics import VIEWS

        return sorted(VIEWS)
    if name in ("case_id", "appeal_id", "flag_id", "number"):  # no case, appeal, flag, sheet page
        return ["999999"]
    if name == "token":  # a well-formed case token that no event has
        return ["1-20991231-" + "0" * 24]
    if name == "window_id":  # no window exists in this content
        return ["window-unknown"]
    if name == "version":  # no firmware bundle exists in this content
        return ["fw-unknown"]
    raise AssertionError(f"no value for the URL parameter {name!r}: teach tests/test_web_fuzz.py")


FILTERED = ("web.evaluations", "api.evaluations", "api.evaluations_summary")
UNKNOWN = ("kp-unknown:", "unit-unknown", "code-unknown", "window-unknown", "fw-unknown", "1-2099")
# GET routes that answer a request without its query with something other than 200
ANSWERS = {
    "citizen_portal.followup": 404,  # the kiosk's follow-up link, without its id and token
    "citizen_sheets.case_qr": 400,  # the case QR API, without a case number
    "firmware.chunk_file": 400,  # a chunk, without its file and number
}


def urls(app, content):
    """(endpoint, url, known) for every GET route; known is False for a device
    id the devices table does not hold."""
    known_ids = {device["device_id"] for device in content["devices"]}
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods or rule.endpoint == "static":
                continue
            choices = [{}]
            for name in sorted(rule.arguments):
                choices = [
                    {**chosen, name: value}
                    for chosen in choices
                    for value in parameter_values(name, content)
                ]
            for values in choices:
                url = url_for(rule.endpoint, **values)
                known = "device_id" not in values or values["device_id"] in known_ids
                known = known and not any(
                    str(v).startswith(UNKNOWN) or v == "999999" for v in values.values()
                )
                known = known and rule.endpoint not in ANSWERS
                found.append((rule.endpoint, url, known))
                if rule.endpoint in FILTERED:
                    for rec in content["ratings"][:2]:
                        query = {k: rec[k] for k in ("window_id", "device_id") if k in rec}
                        found.append((rule.endpoint, url + "?" + urlencode(query), known))
    return found


# `make test` walks every route with a few hostile worlds; `make test-long` with many
EXAMPLES = 60 if os.environ.get("HCP_LONG") == "1" else 8


@pytest.fixture
def app(engine_app):
    """On both databases: PostgreSQL refuses numbers SQLite takes, and the reverse."""
    return engine_app


@pytest.fixture
def clients(app):
    admin, viewer = app.test_client(), app.test_client()
    AuthActions(admin).login("admin")
    AuthActions(viewer).login("viewer")
    viewer.get("/?lang=en")  # the viewer walks the English pages
    return {"admin": admin, "viewer": viewer}


def test_the_walk_covers_every_get_route(app):
    content = {"devices": [{"device_id": "kp-01"}], "ratings": []}
    endpoints = {endpoint for endpoint, _url, _known in urls(app, content)}
    expected = {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if "GET" in rule.methods and rule.endpoint != "static"
    }
    assert endpoints == expected
    assert {"web.device", "api.device_days", "pf_map.page", "pf_map.api_read"} <= endpoints


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(hostile=hostile_content())
def test_no_route_breaks_and_the_contact_never_shows(app, clients, hostile):
    contact, content = hostile
    fill(app.extensions["hcp_engine"], contact, content)
    for endpoint, url, known in urls(app, content):
        for role, client in clients.items():
            response = client.get(url)
            raw = response.get_data()  # a file (an image, a workbook, a chunk) is bytes
            where = f"{role} GET {url}"
            assert response.status_code < 500, where
            assert contact.encode() not in raw, where
            if endpoint in ANSWERS:
                assert response.status_code in (ANSWERS[endpoint], 401, 403), where
            elif not known:
                assert (
                    response.status_code in (404, 403)
                    if role != "admin"
                    else response.status_code == 404
                ), where
            elif role == "admin":
                assert response.status_code == 200, where
            else:
                assert response.status_code in (200, 403), where
            if endpoint == "api.devices":
                shown = {key for item in response.get_json()["items"] for key in item}
                assert ("counts_stored" in shown) == (role == "admin" and bool(content["devices"]))
