"""Tables of the citizen channels: QR pages, web portal, SMS, paper cards, phones (issue 10).

They live in db.metadata (db.py imports this module), so the migrations test
compares them with migrations/versions/0012_citizen.py.
"""

from __future__ import annotations

from sync_server.db import metadata  # noqa: F401
