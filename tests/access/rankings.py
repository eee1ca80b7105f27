"""Rankings, 通报, the digest and the deadline settings in the access matrix
(tests/test_access.py)."""

from __future__ import annotations

from sync_server import deadlines
from sync_server.schema_rankings import calendar_days

RULE = {
    "unit": "370305001", "general_days": "5", "general_basis": "working",
    "complex_days": "15", "complex_basis": "working",
}  # fmt: skip
ROUTES = [
    ("GET", "/rankings?period=2026-10", "rankings", None),
    ("GET", "/rankings/export?period=2026-10&dim=window&format=csv", "rankings", None),
    ("POST", "/rankings/compute", "loop_settings", {"period": "2026-10"}),
    ("GET", "/api/v1/rankings?period=2026-10", "rankings", None),
    ("GET", "/api/v1/rankings?period=2026-10&level=window", "rankings", None),
    ("GET", "/digest", "cases", None),
    ("GET", "/digest?unit=370305001", "cases", None),
    ("GET", "/deadlines/settings", "loop_settings", None),
    ("POST", "/deadlines/settings/values", "loop_settings", {"due_soon_hours": "24"}),
    ("POST", "/deadlines/settings/rule", "loop_settings", RULE),
    ("POST", "/deadlines/settings/rule/delete", "loop_settings", {"unit": "370305002"}),
    ("POST", "/deadlines/settings/calendar", "loop_settings", {"lines": "2027-01-01 休 元旦"}),
    ("POST", "/deadlines/settings/calendar/delete", "loop_settings", {"day": "2027-10-01"}),
]  # fmt: skip
GRANTS = {
    "admin": {"rankings", "loop_settings", "cases"},
    "supervisor": {"rankings", "cases"},
    "unit_manager": {"rankings", "cases"},
    "other_manager": {"rankings", "cases"},
}
# the digest of the other street, asked for by unit
OUTSIDE_QUERY = {
    ("/digest?unit=370305001", "other_manager"): 404,
}
ELSEWHERE = {
    "/public",  # public, no login: tests/test_rankings.py (no rater, staff or comment on it)
}


def build(app):
    """A rule for 雪宫街道 and a calendar entry, for the forms that delete them."""
    engine = app.extensions["hcp_engine"]
    with engine.begin() as conn:
        deadlines.set_rule(
            conn, "370305002",
            {"general_days": 7, "general_basis": "natural", "complex_days": 15,
             "complex_basis": "natural"},
        )  # fmt: skip
        conn.execute(calendar_days.insert().values(day="2027-10-01", working=False, note="国庆节"))


# (role, method, path, body, status) for tests/test_openapi.py's CALLS
OPENAPI_CALLS = [
    ("unit_manager", "get", "/api/v1/rankings?period=2026-10&level=window", None, 200),
    ("supervisor", "get", "/api/v1/rankings", None, 200),
    ("admin", "get", "/api/v1/rankings?period=2026-13", None, 400),
    ("admin", "get", "/api/v1/rankings?level=galaxy", None, 400),
    ("technician", "get", "/api/v1/rankings", None, 403),
    (None, "get", "/api/v1/rankings", None, 401),
]  # fmt: skip
