"""Tables of deadline rules, the holiday calendar, rankings, 通报 and the public page (issue 9).

They live in db.metadata (db.py imports this module), so the migrations test
compares them with migrations/versions/0008_rankings.py.
"""

from __future__ import annotations

from sync_server.db import metadata  # noqa: F401
