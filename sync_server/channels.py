"""Service events and every rating channel (issue 10).

A feature module (sync_server/features.py): init_app, before_store and
after_store are its joins with the collector.
"""

from __future__ import annotations


def init_app(app) -> None:
    """Register this feature's pages and API routes (none yet)."""
