"""Tables of device configuration, commands and firmware updates (issue 11).

They live in db.metadata (db.py imports this module), so the migrations test
compares them with migrations/versions/0010_fleet.py.
"""

from __future__ import annotations

from sync_server.db import metadata  # noqa: F401
