"""The audit log: every change made through the collector (who, when, what,
before and after) and every reveal of a rater's contact.

`record` writes on the caller's connection, inside the transaction of the
change it describes, so a change and its log entry are stored together or
not at all. Nothing here ever stores a contact itself: a reveal logs which
record's contact was shown, and to whom.
"""

from __future__ import annotations

import json

from flask import has_request_context, request
from flask_login import current_user
from sqlalchemy import and_, func, select

from sync_server import db


def _who() -> tuple[str, str, str | None]:
    if has_request_context() and current_user.is_authenticated:
        return current_user.actor, current_user.role, request.remote_addr
    return "system", "system", None


def _json(value) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def record(conn, action: str, target: str | None, before=None, after=None) -> None:
    actor, role, address = _who()
    conn.execute(
        db.audit_log.insert().values(
            at=db.utc_now(),
            actor=actor,
            role=role,
            address=address,
            action=action,
            target=None if target is None else str(target)[:200],
            before=_json(before),
            after=_json(after),
        )
    )


def entries(engine, page: int = 1, per_page: int = 50, action=None, target=None) -> dict:
    a = db.audit_log.c
    conditions = []
    if action:
        conditions.append(a.action == action)
    if target:
        conditions.append(a.target == target)
    where = and_(True, *conditions)
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(db.audit_log).where(where)).scalar()
        rows = conn.execute(
            select(db.audit_log)
            .where(where)
            .order_by(a.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        ).all()
    items = []
    for row in rows:
        item = dict(row._mapping)
        item["before"] = json.loads(row.before) if row.before else None
        item["after"] = json.loads(row.after) if row.after else None
        items.append(item)
    return {"items": items, "page": page, "per_page": per_page, "total": total}
