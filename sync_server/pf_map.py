"""The channel -> provincial `pf` table in force, which an admin may change.

protocols.levels.CHANNEL_TO_PF holds the defaults and migration 0003 seeds
the `pf_map` table from them; from then on the table is what counts. A row is
(channel, client, pf): client "" stands for any client, and pf None means
"not configured", which is the same as having no row (paper has none by
default: a paper card must never pass for a rating made on a hall terminal).

`to_pf` maps a rating's channel and client to its pf; `from_pf` is its
inverse, derived from the same table, so pf -> channel -> pf gives the pf
back whatever an admin configured.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import select

from protocols import levels
from protocols.levels import MappingError
from protocols.record import WEB_CHANNELS
from sync_server import audit, db

# pf codes that say the rating was made on a hall terminal
HALL_TERMINAL_PF = (4, 5)


class Row(NamedTuple):
    channel: str
    client: str  # "" = any client
    pf: int | None  # None = not configured


class PfMapError(ValueError):
    """A table that cannot be saved; str() names the row and the problem."""


def _rank(value, order: tuple) -> int:
    return order.index(value) if value in order else len(order)


def _order(row) -> tuple:
    """Channels and clients in protocols.levels order (any client first, odd ones last)."""
    channel_rank = _rank(row.channel, levels.CHANNELS)
    client_rank = _rank(row.client, ("", *levels.CLIENTS))
    return (channel_rank, str(row.channel), client_rank, str(row.client))


def read(engine) -> tuple[Row, ...]:
    """The table in force, in channel order."""
    with engine.connect() as conn:
        rows = conn.execute(select(db.pf_map.c.channel, db.pf_map.c.client, db.pf_map.c.pf)).all()
    return tuple(sorted((Row(*row) for row in rows), key=_order))


def details(engine) -> list[dict]:
    """The table in force with who changed each row and when."""
    with engine.connect() as conn:
        rows = conn.execute(select(db.pf_map)).all()
    return [dict(row._mapping) for row in sorted(rows, key=_order)]


def to_pf(table, channel: str, client: str | None = "") -> int:
    """The pf of a rating made on `channel` from `client`: the row for that
    client if it has a pf, else the any-client row; MappingError otherwise."""
    client = client or ""
    for wanted in dict.fromkeys((client, "")):
        for row_channel, row_client, pf in table:
            if row_channel == channel and row_client == wanted and pf is not None:
                return pf
    raise MappingError(
        "channel: no pf code configured for " + repr(channel) + (" / " + client if client else "")
    )


def from_pf(table, pf: int) -> tuple[str, str]:
    """(channel, client) for a pf received from outside, from the table in force.

    Where several rows share the pf, the default inverse's choice
    (protocols.levels.PF_TO_CHANNEL) is taken when it is one of them, else the
    first in channel order. Each candidate maps back to `pf` through to_pf,
    so the round trip holds by construction.
    """
    if not isinstance(pf, int) or isinstance(pf, bool):
        raise MappingError("pf: no mapping for " + repr(pf))
    candidates = [
        (row.channel, row.client)
        for row in sorted((Row(*row) for row in table), key=_order)
        if row.pf is not None and row.pf == pf and to_pf(table, row.channel, row.client) == pf
    ]
    if not candidates:
        raise MappingError("pf: no mapping for " + repr(pf))
    try:
        preferred = levels.pf_to_channel(pf)
    except MappingError:
        preferred = None
    return preferred if preferred in candidates else candidates[0]


def check(rows) -> tuple[Row, ...]:
    """The rows as a table, or PfMapError naming the first problem ("row 3: ...")."""
    table = []
    seen = set()
    for number, row in enumerate(rows, start=1):
        where = f"row {number}: "
        try:
            channel, client, pf = row
        except (TypeError, ValueError):
            raise PfMapError(where + "must have a channel, a client and a pf") from None
        if not isinstance(channel, str) or channel not in levels.CHANNELS:
            raise PfMapError(where + "channel: must be one of " + ", ".join(levels.CHANNELS))
        if not isinstance(client, str) or client not in ("", *levels.CLIENTS):
            raise PfMapError(where + "client: must be empty or one of " + ", ".join(levels.CLIENTS))
        if client and channel not in WEB_CHANNELS:
            raise PfMapError(
                where + "client: only " + ", ".join(WEB_CHANNELS) + " ratings carry a client"
            )
        if pf is not None and (
            not isinstance(pf, int) or isinstance(pf, bool) or pf not in levels.PF_CODES
        ):
            codes = ", ".join(str(code) for code in levels.PF_CODES)
            raise PfMapError(where + "pf: must be one of " + codes + " or empty")
        if channel == "paper" and pf in HALL_TERMINAL_PF:
            raise PfMapError(
                where + "pf: a paper card must not be reported as a hall terminal rating (4, 5)"
            )
        if (channel, client) in seen:
            raise PfMapError(where + f"{channel} / {client or '*'} is given twice")
        seen.add((channel, client))
        table.append(Row(channel, client, pf))
    return tuple(sorted(table, key=_order))


def save(engine, rows, username: str) -> tuple[Row, ...]:
    """Check every row, then replace the table in force with them at once."""
    table = check(rows)
    now = db.utc_now()
    with engine.begin() as conn:
        before = [
            list(row)
            for row in conn.execute(
                select(db.pf_map.c.channel, db.pf_map.c.client, db.pf_map.c.pf).order_by(
                    db.pf_map.c.channel, db.pf_map.c.client
                )
            )
        ]
        conn.execute(db.pf_map.delete())
        if table:
            conn.execute(
                db.pf_map.insert(),
                [row._asdict() | {"updated_by": username, "updated_at": now} for row in table],
            )
        after = [
            [row.channel, row.client, row.pf]
            for row in sorted(table, key=lambda r: (r.channel, r.client))
        ]
        audit.record(conn, "pf_map.save", "pf_map", before, after)
    return table
