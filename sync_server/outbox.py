"""Reporting upward: the outbox to the provincial platform (issue 13).

A feature module (sync_server/features.py): init_app, before_store and
after_store are its joins with the collector. `event_registered` is called
by the channels feature in the transaction that stores a new service event.
"""

from __future__ import annotations


def init_app(app) -> None:
    """Register this feature's pages and API routes (none yet)."""


def event_registered(conn, event: dict) -> None:
    """A new service event was stored in this transaction (not yet reported)."""
