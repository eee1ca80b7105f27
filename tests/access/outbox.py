"""Reporting upward and gaming evidence in the access matrix (tests/test_access.py).

Admins act on the outbox (`outbox`); admins and supervisors read it
(`outbox_read`) and handle gaming evidence (`gaming`). The world adds a dead
letter (ws:1 refused by the province) and one gaming flag (id 1).
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import update

from sync_server import db
from sync_server.schema_outbox import gaming_flags, outbox

_AT = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")

ROUTES = [
    ("GET", "/outbox", "outbox_read", None),
    ("POST", "/outbox/retry", "outbox", {"item": "rating:ws:1"}),
    ("POST", "/outbox/handled", "outbox", {"item": "rating:ws:1", "note": "已与省平台核对"}),
    ("POST", "/outbox/resend", "outbox", {"from": "2026-11-01", "to": "2026-11-30"}),
    ("GET", "/api/v1/outbox", "outbox_read", None),
    ("GET", "/gaming", "gaming", None),
    ("GET", "/gaming/1", "gaming", None),
    ("POST", "/gaming/scan", "gaming", {"days": "30"}),
    ("POST", "/gaming/1/act", "gaming", {"action": "review", "note": "调取录像"}),
    ("GET", "/api/v1/gaming/flags", "gaming", None),
    # the window PC reports its keypad's pauses with the business system's token
    ("POST", "/api/v1/windows/A01/pauses", "service_events", {"action": "pause", "at": _AT}),
]
SUCCESS_BY_PATH = {("POST", "/api/v1/windows/A01/pauses"): 201}
GRANTS = {"admin": {"outbox", "outbox_read", "gaming"}, "supervisor": {"outbox_read", "gaming"}}
KNOWN = {
    "/gaming/<int:flag_id>": "/gaming/1",
    "/gaming/<int:flag_id>/act": "/gaming/1/act",
    "/api/v1/windows/<window_id>/pauses": "/api/v1/windows/A01/pauses",
}


def build(app) -> None:
    engine = app.extensions["hcp_engine"]
    with engine.begin() as conn:
        conn.execute(
            update(outbox)
            .where(outbox.c.kind == "rating", outbox.c.ref == "ws:1")
            .values(state="dead", reason="projectNo/serviceNo: no service event registered for it")
        )
        conn.execute(
            gaming_flags.insert().values(
                id=1,
                rule="staff_entry",
                key="ws:1",
                record_id="ws:1",
                subject="keypad",
                evidence=json.dumps({"records": ["ws:1"], "origin": "system"}),
                records=1,
                flagged_at=db.utc_now(),
                state="open",
            )
        )


# (role, method, path, body, status) for tests/test_openapi.py's CALLS
OPENAPI_CALLS = [
    ("supervisor", "get", "/api/v1/outbox", None, 200),
    ("technician", "get", "/api/v1/outbox", None, 403),
    ("supervisor", "get", "/api/v1/gaming/flags?state=open", None, 200),
    ("admin", "get", "/api/v1/gaming/flags?rule=x", None, 400),
    ("clerk", "post", "/api/v1/windows/A01/pauses", {"action": "pause", "at": _AT}, 201),
    ("clerk", "post", "/api/v1/windows/A01/pauses", {"action": "stop", "at": _AT}, 400),
    ("clerk", "post", "/api/v1/windows/B01/pauses", {"action": "pause", "at": _AT}, 404),
]  # fmt: skip
