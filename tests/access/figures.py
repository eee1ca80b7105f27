"""The analytics views, their API and exports, and the evaluations export
(issue 8) in the access matrix (tests/test_access.py)."""

from __future__ import annotations

VIEWS = ("window", "staff", "item", "channel", "tag", "hour", "trend", "bad")

ROUTES = [
    *(("GET", f"/analytics/{view}", "ratings", None) for view in VIEWS),
    ("GET", "/analytics/window?unit=370305002", "ratings", None),
    ("GET", "/analytics/export?view=bad&format=csv", "ratings", None),  # xlsx: test_analytics.py
    *(("GET", f"/api/v1/analytics/{view}", "ratings", None) for view in VIEWS),
    ("GET", "/api/v1/analytics/bad?unit=370305001", "ratings", None),
    ("GET", "/evaluations/export?format=csv", "ratings", None),  # xlsx: test_exports.py
]
KNOWN = {
    "/analytics/<view>": "/analytics/window",
    "/api/v1/analytics/<view>": "/api/v1/analytics/window",
}
# another street's figures, asked for by unit: as if it did not exist
OUTSIDE_QUERY = {
    ("/analytics/window?unit=370305002", "unit_manager"): 404,
    ("/analytics/window?unit=370305002", "clerk"): 404,
    ("/api/v1/analytics/bad?unit=370305001", "other_manager"): 404,
}


# (role, method, path, body, status) for tests/test_openapi.py's CALLS
OPENAPI_CALLS = [
    ("supervisor", "get", "/api/v1/analytics/window?since=2026-01-01", None, 200),
    ("admin", "get", "/api/v1/analytics/trend?grain=year", None, 400),
    ("unit_manager", "get", "/api/v1/analytics/window?unit=370305002", None, 404),
    ("supervisor", "get", "/api/v1/analytics/bad", None, 200),
    ("other_manager", "get", "/api/v1/analytics/bad?unit=370305001", None, 404),
]  # fmt: skip
