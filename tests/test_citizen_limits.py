"""Requests to the citizen pages are bounded per token and per address in a
sliding minute (sync_server/citizen_limits.py): past the bound the page
answers 429 in Chinese with Retry-After and reads or stores nothing; a
minute later it answers again."""

from __future__ import annotations

import pytest

from sync_server import citizen_limits
from tests.harness import shared_worlds
from tests.test_citizen import build, find, rate, ratings, register, text_of

# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres

TOO_MANY = "请求过于频繁，请1分钟后再试。"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def world(engine_app):
    engine_app.tokens = build(engine_app)
    engine_app.config.update(
        HCP_CITIZEN_MAX_PER_TOKEN_MINUTE=4, HCP_CITIZEN_MAX_PER_ADDRESS_MINUTE=10
    )
    engine_app.clock = Clock()
    engine_app.extensions["hcp_citizen_limiter"] = citizen_limits.Limiter(engine_app.clock)
    return engine_app


def _case_path(app, case_no):
    headers = {"Authorization": f"Bearer {app.tokens['clerk_ws']}"}
    answer = app.test_client().get(
        f"/api/v1/case-qr?case_no={case_no}&service_no=1", headers=headers
    )
    return answer.get_json()["url"].replace("http://localhost", "")


def phone(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def refused(response) -> bool:
    return (
        response.status_code == 429
        and text_of(response, "notice") == TOO_MANY
        and response.headers["Retry-After"] == "60"
    )


def test_a_case_token_takes_a_bounded_number_of_requests_a_minute(world):
    register(world, "LZ2026112750001")
    path = _case_path(world, "LZ2026112750001")
    first = phone(world, "10.0.0.1")
    for _n in range(4):
        assert first.get(path).status_code == 200
    assert refused(first.get(path))
    # the token is what is bounded: another phone gets the same answer
    other = phone(world, "10.0.0.2")
    assert refused(other.get(path))
    assert refused(other.post(path, data={"stars": "5"}))  # refused before the form is read
    assert ratings(world) == []
    world.clock.now += 61  # a minute later the page answers again and the rating is taken
    assert rate(other, path, 5, {}).status_code == 200
    assert [r["channel"] for r in ratings(world)] == ["qr_case"]


def test_an_address_is_bounded_over_every_citizen_page(world):
    client = phone(world, "10.0.0.3")
    pages = ["/rate", "/r/w/A01", "/r/w/B01", "/rate", "/r/w/A01"] * 2  # 10 allowed
    assert [client.get(page).status_code for page in pages] == [200] * 10
    assert refused(client.get("/r/w/A01"))
    assert refused(client.get("/rate?lang=zh_CN"))
    # English on request, like every citizen page
    english = client.get("/rate?lang=en")
    assert english.status_code == 429
    assert text_of(english, "notice") == "Too many requests. Try again in a minute."
    # another address is not held back, nor are the staff pages
    assert phone(world, "10.0.0.4").get("/r/w/A01").status_code == 200  # fmt: skip
    assert client.get("/login").status_code == 200


def test_portal_lookups_of_one_case_number_are_bounded(world):
    register(world, "LZ2026112750002", phone="13812345678")
    tries = [phone(world, f"10.0.1.{n}") for n in range(6)]
    for client in tries[:4]:
        assert find(client, "LZ2026112750002", "0000").status_code == 400  # a wrong check
    # the fifth lookup of the case within the minute, from yet another address, even right
    blocked = find(tries[4], "LZ2026112750002", "5678")
    assert refused(blocked)
    # another case number is not held back
    assert find(tries[5], "LZ2026112750099", "0000").status_code == 400


def test_the_limiter_forgets_the_least_recent_keys_past_its_bound():
    clock = Clock()
    limiter = citizen_limits.Limiter(clock, max_keys=3)
    for key in ("a", "b", "c", "d"):
        assert limiter.hit(key, 1)
    assert len(limiter) == 3
    assert limiter.hit("a", 1)  # forgotten, so counted afresh
    assert not limiter.hit("d", 1)
    clock.now += 60
    assert limiter.hit("d", 1)
