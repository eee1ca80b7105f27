"""Pre-aggregated figures maintained by ingest (issue 8).

A feature module (sync_server/features.py): init_app, before_store and
after_store are its joins with the collector.

A rating counts in figures when it is neither excluded (voided by a
supervisor's review) nor a repeat of a service event rated already
(`repeat_of`). `set_excluded` is the one way a rating is voided or restored,
so the figures follow.
"""

from __future__ import annotations

from sync_server import db


def init_app(app) -> None:
    """Register this feature's pages and API routes (none yet)."""


def set_excluded(conn, record_ids: list[str], excluded: bool) -> int:
    """Void (or restore) ratings in the caller's transaction; returns how many
    changed. The ratings stay stored; every figure leaves them out."""
    if not record_ids:
        return 0
    ev = db.evaluations.c
    result = conn.execute(
        db.evaluations.update()
        .where(ev.id.in_(list(record_ids)), ev.excluded == (not excluded))
        .values(excluded=excluded)
    )
    return result.rowcount
