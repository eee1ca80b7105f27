"""The citizen channels' rows of the access matrix (tests/test_access.py).

build() hands out ten paper card numbers of window A01, so the clerk's entry
has a printed card to type in. The service events of tests/access/channels.py
(LZ2026112700001 at 闻韶街道's A01, XG2026112700001 at 雪宫街道's B01) give
the case QR API something to show and to hide.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sync_server import db
from sync_server.schema_citizen import paper_serials


def _today() -> str:
    return dt.datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()


CASE_QR_WS = "/api/v1/case-qr?case_no=LZ2026112700001&service_no=1"
CASE_QR_XG = "/api/v1/case-qr?case_no=XG2026112700001&service_no=1"

ROUTES = [
    ("GET", "/qr/windows", "qr_sheets", None),
    ("GET", "/qr/windows/A01.svg", "qr_sheets", None),
    ("GET", "/qr/windows/sheet-1.svg", "qr_sheets", None),
    ("GET", CASE_QR_WS, "service_events", None),
    ("GET", CASE_QR_XG, "service_events", None),
    ("POST", "/citizen/phone", "contact", {"record_id": "ws:1"}),
    ("GET", "/paper", "paper_entry", None),
    ("POST", "/paper/cards", "paper_entry", {"window": "A01", "count": "2"}),
    ("GET", "/paper/entry", "paper_entry", None),
    ("POST", "/paper/entry", "paper_entry",
     {"card_no": "A01-00001", "card_date": _today(), "level": "1", "reasons": "1"}),
]  # fmt: skip
GRANTS = {
    "admin": {"qr_sheets", "service_events", "paper_entry"},
    "technician": {"qr_sheets"},
    "clerk": {"service_events", "paper_entry"},
}
SUCCESS_BY_PATH = {
    ("POST", "/citizen/phone"): 200,
    ("POST", "/paper/cards"): 200,
}
OUTSIDE = {
    ("/citizen/phone", "other_manager"): 404,
}
OUTSIDE_QUERY = {
    (CASE_QR_XG, "clerk"): 404,
}
KNOWN = {
    "/qr/windows/<window_id>.svg": "/qr/windows/A01.svg",
    "/qr/windows/sheet-<int:number>.svg": "/qr/windows/sheet-1.svg",
}
ELSEWHERE = {
    # public pages of the citizen, tested in tests/test_citizen.py
    "/r/w/<window_id>", "/r/c/<token>", "/rate", "/rate/e/<token>", "/followup",
    # the SMS gateway's callback, signed with a shared secret: tests/test_sms.py
    "/sms/inbound",
}  # fmt: skip


def build(app) -> None:
    with app.extensions["hcp_engine"].begin() as conn:
        conn.execute(
            paper_serials.insert().values(
                window_id="A01", last=10, updated_by="access-world", updated_at=db.utc_now()
            )
        )


# (role, method, path, body, status) for tests/test_openapi.py's CALLS
OPENAPI_CALLS = [
    ("clerk", "get", "/api/v1/case-qr?case_no=LZ2026112700001&service_no=1", None, 200),
    ("clerk", "get", "/api/v1/case-qr?case_no=XG2026112700001&service_no=1", None, 404),
    ("clerk", "get", "/api/v1/case-qr?case_no=%3Cx%3E", None, 400),
    ("technician", "get", "/api/v1/case-qr?case_no=LZ2026112700001&service_no=1", None, 403),
    (None, "get", "/api/v1/case-qr?case_no=LZ2026112700001&service_no=1", None, 401),
]  # fmt: skip
