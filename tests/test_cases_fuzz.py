"""Hostile input against the bad-review loop, on both databases.

- Whatever storable content the ratings carry (tests/test_web_fuzz.py's
  hostile content: arbitrary Unicode in every text field, odd windows and
  units), every page and API route of the loop answers without a 500 and
  never shows a rater's contact.
- Whatever JSON a client sends as a step, an appeal or a decision, the answer
  is the step taken (200/201) or a refusal naming a field (400), and a
  refusal changes nothing.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from sync_server.schema_cases import case_appeals, case_steps, cases
from tests.harness.collector import AuthActions
from tests.harness.records import add_evaluation
from tests.test_web_fuzz import fill, hostile_content

FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PAGES = ("/cases", "/cases?overdue=1", "/cases/ledger", "/cases/ledger/export?format=csv",
         "/cases/alerts", "/cases/appeals?state=all", "/api/v1/cases", "/api/v1/cases/ledger",
         "/api/v1/appeals?state=all")  # fmt: skip


@pytest.fixture
def app(engine_app):
    return engine_app


@pytest.fixture
def clients(app):
    admin, viewer = app.test_client(), app.test_client()
    AuthActions(admin).login("admin")
    AuthActions(viewer).login("viewer")
    viewer.get("/?lang=en")
    return {"admin": admin, "viewer": viewer}


@FUZZ
@given(hostile=hostile_content())
def test_no_case_page_breaks_on_what_ratings_carry(app, clients, hostile):
    contact, content = hostile
    engine = app.extensions["hcp_engine"]
    # the examples share one database, and fill() empties the ratings but not
    # the other features' tables: a rating id is used once per test
    seen = app.extensions.setdefault("cases_fuzz_ids", set())
    kept = [i for i, rec in enumerate(content["ratings"]) if rec["id"] not in seen]
    content = {
        **content,
        "ratings": [content["ratings"][i] for i in kept],
        "excluded": [content["excluded"][i] for i in kept],
    }
    seen.update(rec["id"] for rec in content["ratings"])
    fill(engine, contact, content)
    with engine.connect() as conn:
        case_ids = conn.execute(select(cases.c.id)).scalars().all()
    urls = [*PAGES]
    for case_id in case_ids:
        urls += [f"/cases/{case_id}", f"/api/v1/cases/{case_id}"]
    for role, client in clients.items():
        for url in urls:
            response = client.get(url)
            where = f"{role} GET {url}"
            assert response.status_code < 500, where
            assert contact not in response.get_data(as_text=True), where


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),  # fmt: skip
    max_leaves=6,
)
FIELD = st.sampled_from(
    ["verify", "classify", "rectify", "feed_back", "visit", "close", "fix_now", "ledger",
     "explanation", "satisfied", "unsatisfied", "upheld", "mistaken", "malicious",
     "2020-01-01", "2999-12-31", "2026-02-30", "", " ", "x" * 2001]
) | JSON  # fmt: skip
BODY = st.dictionaries(
    st.sampled_from(["action", "note", "reason", "problem", "kind", "due_at", "verdict",
                     "record_id", "evidence", "outcome", "file", "extra"]),
    FIELD,
    max_size=6,
) | JSON  # fmt: skip
ROUTE = st.sampled_from(
    [
        "/api/v1/cases/1/steps",
        "/api/v1/cases/1/reopen",
        "/api/v1/appeals",
        "/api/v1/appeals/1/decision",
    ]  # fmt: skip
)
FIELDS = set(string.ascii_lowercase + "_")


def _snapshot(engine):
    with engine.connect() as conn:
        return (
            conn.execute(select(cases)).all(),
            conn.execute(select(func.count()).select_from(case_steps)).scalar(),
            conn.execute(select(func.count()).select_from(case_appeals)).scalar(),
        )


@FUZZ
@given(calls=st.lists(st.tuples(ROUTE, BODY), min_size=1, max_size=6))
def test_any_body_is_taken_or_refused_by_field_and_a_refusal_changes_nothing(app, clients, calls):
    engine = app.extensions["hcp_engine"]
    add_evaluation(engine, "kp-01:1", 1, comment="慢", org_id="370305001")
    client = clients["admin"]
    for path, body in calls:
        if isinstance(body, dict) and path.endswith("/appeals"):
            body.setdefault("record_id", "kp-01:1")
        before = _snapshot(engine)
        response = client.post(path, json=body)
        answer = response.get_json()
        assert response.status_code in (200, 201, 400, 404), (path, body, answer)
        if response.status_code == 400:
            field, _, problem = answer["error"].partition(": ")
            assert set(field) <= FIELDS and problem, answer
            assert _snapshot(engine) == before, (path, body, answer)
