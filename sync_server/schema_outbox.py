"""Tables of reporting upward: the outbox to the provincial platform (issue 13).

They live in db.metadata (db.py imports this module), so the migrations test
compares them with migrations/versions/0011_outbox.py.
"""

from __future__ import annotations

from sync_server.db import metadata  # noqa: F401
