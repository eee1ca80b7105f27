# ruff: noqa: F811 (the site fixture is imported from test_rankings)
"""GET /api/v1/rankings on test_rankings.py's hand-built October 2026: the
same figures and ranks as the page, a unit manager's and a unit token's
scope, the snapshot once stored, and refusals with their exact messages; each
answer checked against the OpenAPI document."""

from __future__ import annotations

from sync_server import rankings_data, tokens
from tests.harness.records import add_evaluation
from tests.test_openapi import problems
from tests.test_rankings import NOW, PASSWORD, _login, site  # noqa: F401 (site: a fixture)


def answer(client, query, status=200, headers=None):
    response = client.get("/api/v1/rankings" + query, headers=headers or {})
    assert response.status_code == status, response.get_data(as_text=True)
    document = client.get("/api/v1/openapi.json").get_json()
    schema = document["paths"]["/api/v1/rankings"]["get"]["responses"][str(status)]
    schema = schema["content"]["application/json"]["schema"]
    assert problems(response.get_json(), schema, document) == []
    return response.get_json()


def test_the_units_of_october_ranked_as_worked_out_by_hand(site):
    found = answer(_login(site, "admin"), "?period=2026-10")
    assert (found["period"], found["first_day"], found["last_day"]) == (
        "2026-10", "2026-10-01", "2026-10-31",
    )  # fmt: skip
    assert (found["level"], found["by"], found["stored"]) == ("unit", "good_rate", False)
    # the site's October: hall-xg 3/4 = 0.75 first; hall-qd 3/5 and hall-ws 3/5
    # (its fifth, ws:7, a 差评) tie at 0.6 for second; on time: hall-xg 0/1,
    # hall-qd 1/1, hall-ws 1/2
    assert [
        (r["id"], r["valid"], r["good_rate"], r["on_time_rate"], r["ranks"]["good_rate"],
         r["ranks"]["on_time_rate"])
        for r in found["items"]
    ] == [
        ("hall-xg", 4, 0.75, 0.0, 1, 3),
        ("hall-qd", 5, 0.6, 1.0, 2, 1),
        ("hall-ws", 5, 0.6, 0.5, 2, 2),
    ]  # fmt: skip
    # of three, one praised at most and the tie for last listed whole
    assert [n["id"] for n in found["notices"]["praised"]] == ["hall-xg"]
    assert [n["id"] for n in found["notices"]["bottom"]] == ["hall-qd", "hall-ws"]
    by_time = answer(_login(site, "admin"), "?period=2026-10&by=on_time_rate")
    assert [r["id"] for r in by_time["items"]] == ["hall-qd", "hall-ws", "hall-xg"]


def test_a_unit_manager_and_a_unit_token_see_their_own_windows_only(site):
    um = _login(site, "um", PASSWORD)
    windows = answer(um, "?period=2026-10&level=window")
    assert [r["id"] for r in windows["items"]] == ["A01"] and windows["notices"] is None
    assert len(answer(um, "?period=2026-10&level=town")["items"]) == 3  # the 通报 is for all
    with site.extensions["hcp_engine"].begin() as conn:
        _id, token = tokens.create(conn, "rankings feed", "unit_manager", "370305002", "admin")
    bearer = {"Authorization": f"Bearer {token}"}
    client = site.test_client()
    staff = answer(client, "?period=2026-10&level=staff", headers=bearer)
    assert [r["id"] for r in staff["items"]] == ["2001"]
    assert answer(client, "?period=2026-10", 401, {"Authorization": "Bearer hcp_wrong"})


def test_a_stored_snapshot_is_what_the_api_gives(site):
    engine = site.extensions["hcp_engine"]
    with engine.begin() as conn:
        rankings_data.compute(conn, "2026-10", actor="admin", now_utc=NOW)
    # a late 差评 after the snapshot changes nothing published: computed now,
    # hall-ws would be 3/6 = 0.5
    add_evaluation(engine, "ws:9", 1, rated_at="2026-10-22T02:00:00Z", window_id="A01")
    found = answer(_login(site, "admin"), "?period=2026-10")
    assert found["stored"] is True and found["computed_at"]
    assert [(r["id"], r["good_rate"]) for r in found["items"]][2] == ("hall-ws", 0.6)
    fresh = answer(_login(site, "admin"), "?period=2026-10-01..2026-10-31")
    assert fresh["stored"] is False
    assert [(r["id"], r["good_rate"]) for r in fresh["items"]][2] == ("hall-ws", 0.5)


def test_bad_parameters_are_refused_by_name(site):
    admin = _login(site, "admin")
    assert answer(admin, "?period=2026-13", 400) == {"error": "period: no month '2026-13'"}
    assert answer(admin, "?period=2026-10-05..2026-10-01", 400) == {
        "error": "period: the last day is before the first"
    }
    assert answer(admin, "?level=galaxy", 400) == {
        "error": "level: must be one of unit, town, window, staff, item"
    }
    assert answer(admin, "?by=mood", 400) == {
        "error": "by: must be one of good_rate, bad, on_time_rate, visit_rate, active_rate"
    }
    assert answer(admin, "?dim=unit", 400) == {"error": "dim: unknown parameter"}
