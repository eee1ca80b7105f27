"""Service events' rows of the access matrix (tests/test_access.py).

build() registers one service event in each street (hall-ws at A01, hall-xg
at B01), so the list has something to show and to hide. The registrations
in ROUTES are new events of 闻韶街道's hall: the admin and the clerk of
闻韶街道 (the business system's role) may register them; the scope of a
clerk's token is tested in tests/test_service_events.py.
"""

from __future__ import annotations

import datetime as dt

from sync_server import service_events


def _recently(minutes: int) -> str:
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


ITEM = "11370305MB2856093X437030500100101"


def _event(case_no: str, unit: str = "hall-ws", window: str = "A01") -> dict:
    return {
        "case_no": case_no,
        "service_no": "1",
        "item_code": ITEM,
        "unit_id": unit,
        "window_id": window,
        "handled_at": _recently(10),
    }


ROUTES = [
    ("GET", "/api/v1/service-events", "service_events", None),
    ("GET", "/api/v1/service-events?case_no=XG2026112700001", "service_events", None),
    ("POST", "/api/v1/service-events", "service_events", _event("LZ2026112700099")),
    ("POST", "/api/v1/service-events/batch", "service_events",
     {"events": [_event("LZ2026112700098"), _event("LZ2026112700097")]}),
]  # fmt: skip
GRANTS = {
    "admin": {"service_events"},
    "clerk": {"service_events"},
}
SUCCESS_BY_PATH = {
    ("POST", "/api/v1/service-events"): 201,
    ("POST", "/api/v1/service-events/batch"): 200,
}


# the world's events, as registered by build()
WORLD_EVENTS = [_event("LZ2026112700001"), _event("XG2026112700001", "hall-xg", "B01")]

# (role, method, path, body, status) for tests/test_openapi.py's CALLS: each
# operation of this feature, its successes and its errors
OPENAPI_CALLS = [
    ("clerk", "get", "/api/v1/service-events", None, 200),
    ("clerk", "get", "/api/v1/service-events?per_page=0", None, 400),
    ("clerk", "post", "/api/v1/service-events", _event("LZ2026112700096"), 201),
    ("clerk", "post", "/api/v1/service-events", WORLD_EVENTS[0], 200),
    ("clerk", "post", "/api/v1/service-events", {**WORLD_EVENTS[0], "window_id": None}, 409),
    ("clerk", "post", "/api/v1/service-events", {"case_no": "LZ1"}, 400),
    ("clerk", "post", "/api/v1/service-events", WORLD_EVENTS[1], 403),
    ("supervisor", "post", "/api/v1/service-events", _event("LZ2026112700095"), 403),
    ("clerk", "post", "/api/v1/service-events/batch",
     {"events": [_event("LZ2026112700094"), WORLD_EVENTS[1]]}, 200),
    ("clerk", "post", "/api/v1/service-events/batch", {"events": []}, 400),
]  # fmt: skip


def build(app) -> None:
    engine = app.extensions["hcp_engine"]
    with engine.begin() as conn:
        for body in WORLD_EVENTS:
            service_events.register(conn, body, "api", "access-world")
