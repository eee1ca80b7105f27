"""Tables of the bad-review loop: cases, workflow, appeals, ledger (issue 9).

They live in db.metadata (db.py imports this module), so the migrations test
compares them with migrations/versions/0007_cases.py.
"""

from __future__ import annotations

from sync_server.db import metadata  # noqa: F401
