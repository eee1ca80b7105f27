"""API tokens for machine clients (the business system, exports, other tools).

An admin creates a token for a role (and, for a unit-scoped role, a unit);
the token is shown once and only its SHA-256 is kept (a token is 32 random
bytes, so a plain hash is enough: nothing to guess). A client sends it as
``Authorization: Bearer <token>`` to /api/ URLs and acts as a user of that
role and unit for the request. A revoked or unknown token is refused with a
JSON 401 saying so.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from flask import g
from sqlalchemy import select, update

from sync_server import audit, db
from sync_server.auth import User, check_role_and_unit

PREFIX = "hcp_"
NAME_PATTERN = re.compile(r"[A-Za-z0-9._ -]{1,64}")
TOKEN_PATTERN = re.compile(r"hcp_[A-Za-z0-9_-]{43}")
ERRORS = {
    "malformed": "token: the Authorization header must be 'Bearer <token>'",
    "unknown": "token: unknown token",
    "revoked": "token: this token has been revoked",
}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def create(conn, name: str, role: str, unit_id: str | None, by: str) -> tuple[int, str]:
    """A new token: (id, the token itself, which is not kept)."""
    if (
        not isinstance(name, str)
        or not NAME_PATTERN.fullmatch(name.strip() or "-")
        or not name.strip()
    ):
        raise ValueError("name: must be 1..64 characters of A-Z a-z 0-9 . _ - and spaces")
    check_role_and_unit(conn, role, unit_id or None)
    token = PREFIX + secrets.token_urlsafe(32)
    result = conn.execute(
        db.api_tokens.insert().values(
            name=name.strip(),
            token_hash=_hash(token),
            prefix=token[:12],
            role=role,
            unit_id=unit_id or None,
            created_by=by,
            created_at=db.utc_now(),
        )
    )
    token_id = result.inserted_primary_key[0]
    audit.record(conn, "token.create", f"token:{token_id}", after=_public(conn, token_id))
    return token_id, token


def _public(conn, token_id: int) -> dict | None:
    row = conn.execute(select(db.api_tokens).where(db.api_tokens.c.id == token_id)).first()
    if row is None:
        return None
    return {k: v for k, v in row._mapping.items() if k != "token_hash"}


def listing(conn) -> list[dict]:
    rows = conn.execute(select(db.api_tokens.c.id).order_by(db.api_tokens.c.id.desc())).scalars()
    return [_public(conn, token_id) for token_id in rows]


def revoke(conn, token_id: int) -> None:
    before = _public(conn, token_id)
    if before is None:
        raise ValueError(f"token: unknown token id {token_id}")
    if before["revoked_at"]:
        raise ValueError(f"token: {token_id} is already revoked")
    conn.execute(
        update(db.api_tokens).where(db.api_tokens.c.id == token_id).values(revoked_at=db.utc_now())
    )
    audit.record(conn, "token.revoke", f"token:{token_id}", before, _public(conn, token_id))


def user_from_request(req) -> User | None:
    """The user a request's bearer token stands for (API URLs only); None, with
    the reason in g.hcp_token_error, when the token is refused."""
    header = req.headers.get("Authorization")
    if header is None or not req.path.startswith("/api/"):
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not TOKEN_PATTERN.fullmatch(token):
        g.hcp_token_error = ERRORS["malformed"]
        return None
    engine = db.get_engine()
    t = db.api_tokens.c
    with engine.connect() as conn:
        row = conn.execute(select(db.api_tokens).where(t.token_hash == _hash(token))).first()
    if row is None:
        g.hcp_token_error = ERRORS["unknown"]
        return None
    if row.revoked_at:
        g.hcp_token_error = ERRORS["revoked"]
        return None
    with engine.begin() as conn:
        conn.execute(update(db.api_tokens).where(t.id == row.id).values(last_used_at=db.utc_now()))
    return User(f"token:{row.id}", f"token:{row.name}", row.role, row.unit_id, token_id=row.id)
