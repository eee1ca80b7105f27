"""The collector's features beyond storing ratings, and the two points where
they join the store.

Each feature is one module of this package with, where it needs them:

- ``init_app(app)``: registers its blueprints, nav entries and API paths;
- ``before_store(conn, rows)``: called in the transaction that stores new
  ratings, before they are inserted; may add collector-side columns to each
  row dict (a repeat mark, say) but never changes what the rater gave;
- ``after_store(conn, rows)``: called in the same transaction right after the
  rows were inserted (figures, cases, the outbox); an exception rolls the
  whole batch back, so nothing is stored without its consequences.

`store_evaluations` is the one way new ratings enter the table: the MQTT
ingest and the channels the collector serves itself (web, QR, SMS, paper)
both go through it, so every rating gets the same treatment.
"""

from __future__ import annotations

import functools
import importlib
import operator

from sqlalchemy import BigInteger, Boolean, Integer, SmallInteger, String

from sync_server import db, pg_array

# the order matters: channels marks repeats before figures, cases and the
# outbox look at them
FEATURES = ("channels", "citizen", "figures", "cases", "rankings", "fleet", "outbox")


@functools.cache
def modules():
    return [importlib.import_module(f"sync_server.{name}") for name in FEATURES]


def init_app(app) -> None:
    for module in modules():
        init = getattr(module, "init_app", None)
        if init is not None:
            init(app)


def store_evaluations(
    conn, engine, rows: list[dict], after: bool = True, ids_locked: bool = False
) -> None:
    """Insert new rating rows (their ids checked absent in this transaction)
    with every feature's before/after step, in the caller's transaction.
    `after` False leaves the after steps to the caller, who runs
    `after_store` once for the rows of several inserts (the ingest does, for
    a group of messages committed together). `ids_locked`: the caller found
    the ids absent under a lock that keeps them so (the ingest's lock per
    device, or SQLite's single writer), so the insert leaves out ON
    CONFLICT (on PostgreSQL its speculative insertion cost the server about
    6 us a row): a stored id would then be a bug, and it raises (an
    IntegrityError) instead of being skipped while the after steps count it."""
    if not rows:
        return
    for module in modules():
        step = getattr(module, "before_store", None)
        if step is not None:
            step(conn, rows)
    _insert_new(conn, engine, rows, ids_locked)
    if after:
        after_store(conn, rows)


# columns SQLAlchemy fills in itself when a row leaves them out (default=...)
_DEFAULTED = frozenset(c.name for c in db.evaluations.columns if c.default is not None)
_COLUMNS = frozenset(c.name for c in db.evaluations.columns)
_SQLITE_INSERT: dict[tuple, str] = {}  # (columns..., ids_locked) -> statement


def _insert_new(conn, engine, rows: list[dict], ids_locked: bool = False) -> None:
    """The rows inserted, a row whose id is stored already skipped. On SQLite,
    rows that all name the same columns go to the driver's executemany as
    tuples: the statement SQLAlchemy would send, without its building each
    row's parameters in Python (50.0 against 37.5 us a row for groups of
    1,000 on this machine); on PostgreSQL, all rows in one statement
    (_insert_unnest). Rows that do not all name the same columns go through
    SQLAlchemy."""
    keys = rows[0].keys()
    if (
        conn.dialect.name not in ("sqlite", "postgresql")
        or not _DEFAULTED <= keys
        or not keys <= _COLUMNS
        or any(row.keys() != keys for row in rows)
    ):
        conn.execute(db.insert_ignoring_duplicates(engine, db.evaluations, "id"), rows)
        return
    names = tuple(keys)
    if conn.dialect.name == "postgresql":
        _insert_unnest(conn, names, rows, ids_locked)
        return
    sql = _SQLITE_INSERT.get((*names, ids_locked))
    if sql is None:
        quote = conn.dialect.identifier_preparer.quote
        sql = f"INSERT INTO evaluations ({', '.join(quote(n) for n in names)}) " + (
            f"VALUES ({', '.join('?' for _ in names)})"
            + ("" if ids_locked else " ON CONFLICT (id) DO NOTHING")
        )
        _SQLITE_INSERT[(*names, ids_locked)] = sql
    conn.exec_driver_sql(sql, list(map(operator.itemgetter(*names), rows)))


def _array_type(column) -> str:
    """The element type a column's values are sent as, without a length: the
    insert's own assignment then refuses a value too long, as it would one
    by one (a cast to varchar(n) would cut it short instead)."""
    kind = column.type
    for base, name in (
        (Boolean, "boolean"),
        (SmallInteger, "smallint"),
        (BigInteger, "bigint"),
        (Integer, "integer"),
        (String, "text"),
    ):
        if isinstance(kind, base):
            return name
    raise TypeError(f"evaluations.{column.name}: no array type for {kind!r}")


_PG_TYPES = {c.name: _array_type(c) for c in db.evaluations.columns}


# columns that are NULL when an insert leaves them out (nullable, no server
# default): a column all of whose values in a batch are None is not sent
_NULL_IF_LEFT_OUT = frozenset(
    c.name
    for c in db.evaluations.columns
    if c.nullable and c.server_default is None and not c.primary_key
)
_PG_INSERT: dict[tuple, str] = {}  # (columns..., ids_locked) -> statement


def _insert_unnest(conn, names: tuple[str, ...], rows: list[dict], ids_locked=False) -> None:
    """PostgreSQL: every row in one statement, a column an array parameter
    (INSERT ... SELECT FROM unnest): 69 against 42 us a row for groups of
    1,000 on this machine, against the driver's executemany. Each array is
    written as text by sync_server/pg_array.py (psycopg's writing of a list
    value by value was most of this process's CPU on PostgreSQL), and a
    column that is None in every row is left out (it is NULL all the same)."""
    values = map(operator.itemgetter(*names), rows)  # a tuple a row, in C
    sent, columns = [], []
    for name, column in zip(names, zip(*values, strict=True), strict=True):
        if name in _NULL_IF_LEFT_OUT and column.count(None) == len(column):
            continue
        sent.append(name)
        columns.append(pg_array.param(list(column), _PG_TYPES[name]))
    key = (*sent, ids_locked)
    sql = _PG_INSERT.get(key)
    if sql is None:
        quote = conn.dialect.identifier_preparer.quote
        sql = (
            f"INSERT INTO evaluations ({', '.join(quote(n) for n in sent)}) "
            f"SELECT * FROM unnest({', '.join(f'%s::{_PG_TYPES[n]}[]' for n in sent)})"
            + ("" if ids_locked else " ON CONFLICT (id) DO NOTHING")
        )
        if len(_PG_INSERT) > 1000:
            _PG_INSERT.clear()
        _PG_INSERT[key] = sql
    conn.exec_driver_sql(sql, tuple(columns))


def after_store(conn, rows: list[dict]) -> None:
    """Every feature's after step for rows inserted in this transaction."""
    if not rows:
        return
    for module in modules():
        step = getattr(module, "after_store", None)
        if step is not None:
            step(conn, rows)
