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


def build(app) -> None:
    engine = app.extensions["hcp_engine"]
    with engine.begin() as conn:
        service_events.register(conn, _event("LZ2026112700001"), "api", "access-world")
        service_events.register(
            conn, _event("XG2026112700001", "hall-xg", "B01"), "api", "access-world"
        )
