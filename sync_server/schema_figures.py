"""Tables of pre-aggregated figures maintained by ingest (issue 8).

They live in db.metadata (db.py imports this module), so the migrations test
compares them with migrations/versions/0006_figures.py.
"""

from __future__ import annotations

from sync_server.db import metadata  # noqa: F401
