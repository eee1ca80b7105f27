"""Deadlines of 差评 cases: per-jurisdiction rules over the calendar, on both
databases. Holiday facts: chinese_calendar 1.11 (see tests/test_workdays.py).
Beijing time is UTC+8, so the end of a local day is 15:59:59Z."""

from __future__ import annotations

import pytest

from sync_server import deadlines, org
from sync_server.schema_rankings import calendar_days

LINYI = {
    "immediate_days": 1, "immediate_basis": "working",
    "general_days": 5, "general_basis": "working",
    "complex_days": 15, "complex_basis": "working",
    "note": "临沂 1/5/15 个工作日",
}  # fmt: skip
SICHUAN = {
    "general_days": 15, "general_basis": "working",
    "complex_days": 15, "complex_basis": "working",
}  # fmt: skip
TOWN = "370305100"  # 齐都镇
OTHER_TOWN = "370305102"  # 皇城镇


@pytest.fixture
def seeded(engine):
    org.seed(engine)
    with engine.begin() as conn:
        org.add(conn, "units", "hall-qd", "齐都镇便民服务中心", TOWN, kind="hall")
    return engine


def test_linzi_default_natural_days_across_national_day(seeded):
    with seeded.connect() as conn:
        # 10:00 on 30 September in Beijing
        assert deadlines.due_at(conn, "hall-qd", "general", "2026-09-30T02:00:00Z") == (
            "2026-10-07T15:59:59Z"
        )
        assert deadlines.due_at(conn, "hall-qd", "complex", "2026-09-30T02:00:00Z") == (
            "2026-10-15T15:59:59Z"
        )
        # 01:00 on 1 October in Beijing is still 30 September in UTC: local days count
        assert deadlines.due_at(conn, "hall-qd", "general", "2026-09-30T17:00:00Z") == (
            "2026-10-08T15:59:59Z"
        )
        # immediate (立行立改) without days of its own follows general
        assert deadlines.due_at(conn, "hall-qd", "immediate", "2026-09-30T02:00:00Z") == (
            "2026-10-07T15:59:59Z"
        )
        assert deadlines.rule_for(conn, "hall-qd") == deadlines.DEFAULT_RULE


def test_linyi_working_days_across_national_day_inherited_by_the_subtree(seeded):
    with seeded.begin() as conn:
        deadlines.set_rule(conn, TOWN, LINYI)
    with seeded.connect() as conn:
        start = "2026-09-30T02:00:00Z"
        # 1 working day: 1–7 October are holidays, 8 October is the first working day
        assert deadlines.due_at(conn, "hall-qd", "immediate", start) == "2026-10-08T15:59:59Z"
        # 5: 8, 9, 10 (Saturday, adjusted working day), 12, 13
        assert deadlines.due_at(conn, "hall-qd", "general", start) == "2026-10-13T15:59:59Z"
        # 15: 8 9 10 12 13 14 15 16 19 20 21 22 23 26 27
        assert deadlines.due_at(conn, "hall-qd", "complex", start) == "2026-10-27T15:59:59Z"
        assert deadlines.rule_for(conn, "hall-qd")["unit_id"] == TOWN
        # a unit outside the subtree keeps Linzi's default
        assert deadlines.due_at(conn, OTHER_TOWN, "general", start) == "2026-10-07T15:59:59Z"


def test_sichuan_fifteen_working_days_and_a_nearer_rule_wins(seeded):
    with seeded.begin() as conn:
        deadlines.set_rule(conn, TOWN, LINYI)
        deadlines.set_rule(conn, "hall-qd", SICHUAN)
    with seeded.connect() as conn:
        start = "2026-09-30T02:00:00Z"
        assert deadlines.due_at(conn, "hall-qd", "general", start) == "2026-10-27T15:59:59Z"
        # no immediate days of its own: immediate follows general
        assert deadlines.due_at(conn, "hall-qd", "immediate", start) == "2026-10-27T15:59:59Z"
        assert deadlines.due_at(conn, TOWN, "general", start) == "2026-10-13T15:59:59Z"


def test_an_adjusted_working_weekend_is_a_working_day(seeded):
    with seeded.begin() as conn:
        deadlines.set_rule(conn, TOWN, LINYI)
    with seeded.connect() as conn:
        # Friday 9 October + 1 working day = Saturday 10 October (调休上班)
        assert deadlines.due_at(conn, TOWN, "immediate", "2026-10-09T03:00:00Z") == (
            "2026-10-10T15:59:59Z"
        )
        # Friday 18 September + 1 = Sunday 20 September (调休上班)
        assert deadlines.due_at(conn, TOWN, "immediate", "2026-09-18T03:00:00Z") == (
            "2026-09-20T15:59:59Z"
        )


def test_a_deadline_in_a_year_without_data_then_with_the_admins_entry(seeded):
    with seeded.begin() as conn:
        deadlines.set_rule(conn, TOWN, LINYI)
    start = "2026-12-30T02:00:00Z"
    with seeded.connect() as conn:
        # 31 Dec (data), then Monday–Friday: 1, 4, 5, 6 January 2027
        assert deadlines.due_at(conn, TOWN, "general", start) == "2027-01-06T15:59:59Z"
    with seeded.begin() as conn:
        conn.execute(calendar_days.insert().values(day="2027-01-01", working=False, note="元旦"))
    with seeded.connect() as conn:
        assert deadlines.due_at(conn, TOWN, "general", start) == "2027-01-07T15:59:59Z"


def test_state_turns_yellow_then_red():
    due = "2026-10-07T15:59:59Z"
    assert deadlines.state(due, "2026-10-05T15:59:58Z") == "ok"
    assert deadlines.state(due, "2026-10-05T15:59:59Z") == "due_soon"  # 48 hours exactly
    assert deadlines.state(due, "2026-10-07T15:59:59Z") == "due_soon"
    assert deadlines.state(due, "2026-10-07T16:00:00Z") == "overdue"
    assert deadlines.state(due, "2026-10-06T16:00:00Z", soon_hours=12) == "ok"
    assert deadlines.state(due, "2026-10-07T04:00:00.123456Z", soon_hours=12) == "due_soon"


def test_the_due_soon_threshold_is_a_setting(seeded):
    with seeded.begin() as conn:
        assert deadlines.setting(conn, "due_soon_hours") == 48
        deadlines.set_setting(conn, "due_soon_hours", "24")
    with seeded.connect() as conn:
        assert deadlines.state_now(conn, "2026-10-07T15:59:59Z", "2026-10-06T00:00:00Z") == "ok"
        assert deadlines.all_settings(conn) == {
            "due_soon_hours": 24, "bottom_places": 3, "bottom_periods": 2, "praise_places": 3,
        }  # fmt: skip


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({**LINYI, "general_days": "x"}, "general_days: must be a whole number of days"),
        ({**LINYI, "complex_days": 0}, "complex_days: must be 1 to 365, got 0"),
        ({**LINYI, "general_basis": "lunar"}, "general_basis: must be natural or working, got 'lunar'"),
        ({**LINYI, "note": "长" * 201}, "note: at most 200 characters"),
    ],
)  # fmt: skip
def test_bad_rules_are_refused_and_nothing_changes(seeded, values, message):
    with seeded.begin() as conn:
        with pytest.raises(deadlines.RuleError) as caught:
            deadlines.set_rule(conn, TOWN, values)
        assert str(caught.value) == message
        assert deadlines.rules(conn) == []


def test_bad_arguments_are_refused(seeded):
    with seeded.begin() as conn:
        with pytest.raises(deadlines.RuleError, match=r"^unit: no unit 'nowhere'$"):
            deadlines.set_rule(conn, "nowhere", LINYI)
        with pytest.raises(
            ValueError, match=r"^kind: must be one of immediate, general, complex, got 'urgent'$"
        ):
            deadlines.due_at(conn, TOWN, "urgent", "2026-10-01T00:00:00Z")
        with pytest.raises(
            ValueError, match=r"^time: must be UTC text ending in Z, got '2026-10-01'$"
        ):
            deadlines.due_at(conn, TOWN, "general", "2026-10-01")
        with pytest.raises(deadlines.RuleError, match=r"^due_soon_hours: must be 1 to 720, got 0$"):
            deadlines.set_setting(conn, "due_soon_hours", 0)
        with pytest.raises(deadlines.RuleError, match=r"^setting: no setting 'colour'$"):
            deadlines.set_setting(conn, "colour", 1)


def test_hostile_sizes_are_cut_in_messages(seeded):
    with seeded.begin() as conn:
        with pytest.raises(deadlines.RuleError) as caught:
            deadlines.set_rule(conn, "x" * 10_000, LINYI)
        assert str(caught.value) == f"unit: no unit '{'x' * 64}'"
        with pytest.raises(deadlines.RuleError) as caught:
            deadlines.set_setting(conn, "bottom_places", "9" * 5000)
        assert str(caught.value) == "bottom_places: must be a whole number"
