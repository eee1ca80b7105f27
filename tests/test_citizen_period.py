"""The day a case QR or portal link stops working is the last day of the
event's rating period, counted on the holiday calendar the admin keeps
(workdays.Calendar with the admin's entries), the same as the one-per-event
check (channels.period_end): across National Day 2026 and after an admin's
change to it."""

from __future__ import annotations

import datetime as dt

import pytest

from sync_server import citizen_tokens, db
from sync_server.schema_rankings import calendar_days
from tests.harness import shared_worlds
from tests.test_citizen import build, register

# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


@pytest.fixture
def world(engine_app):
    engine_app.tokens = build(engine_app)
    return engine_app


def case_qr(app, case_no):
    headers = {"Authorization": f"Bearer {app.tokens['clerk_ws']}"}
    answer = app.test_client().get(
        f"/api/v1/case-qr?case_no={case_no}&service_no=1", headers=headers
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def token_day(url: str) -> str:
    return url.rsplit("/", 1)[1].split("-")[1]


def admin_enters(app, day: str, working: bool, note: str) -> None:
    with app.extensions["hcp_engine"].begin() as conn:
        conn.execute(
            calendar_days.insert().values(
                day=day, working=working, note=note, updated_by="admin", updated_at=db.utc_now()
            )
        )


def test_the_case_qr_expires_with_the_period_over_national_day_and_the_admins_calendar(world):
    # handled Wed Sep 30: Oct 1-7 are National Day, Sat Oct 10 is worked (调休), so the
    # five working days are Oct 8, 9, 10, 12, 13
    answer = register(world, "LZ2026093000001", handled=at("2026-09-30T16:30:00+08:00"))
    assert answer["rate_until"] == "2026-10-13"
    first = case_qr(world, "LZ2026093000001")
    assert (first["last_day"], token_day(first["url"])) == ("2026-10-13", "20261013")
    # the admin makes Mon Oct 12 a local holiday: the period, and the token, run a day longer
    admin_enters(world, "2026-10-12", False, "本地调整")
    second = case_qr(world, "LZ2026093000001")
    assert (second["last_day"], token_day(second["url"])) == ("2026-10-14", "20261014")
    # and Sat Oct 10 no longer worked: one more
    with world.extensions["hcp_engine"].begin() as conn:
        conn.execute(
            calendar_days.insert().values(day="2026-10-10", working=False, note="取消调休")
        )
    third = case_qr(world, "LZ2026093000001")
    assert (third["last_day"], token_day(third["url"])) == ("2026-10-15", "20261015")
    # each token is genuine until its own day and no longer after it
    with world.test_request_context("/"):
        key = citizen_tokens.app_key()
    token = third["url"].rsplit("/", 1)[1]
    assert citizen_tokens.check_event_token(key, "qr_case", token, dt.date(2026, 10, 15)) == answer["id"]  # fmt: skip
    with pytest.raises(citizen_tokens.TokenError, match="^expired$"):
        citizen_tokens.check_event_token(key, "qr_case", token, dt.date(2026, 10, 16))
