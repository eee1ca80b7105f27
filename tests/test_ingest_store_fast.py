"""features.store_evaluations' insert on SQLite: rows straight to the driver
store exactly what SQLAlchemy's insert stores."""

import secrets

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DataError

from hcp.bench import bench_record
from sync_server import db, features
from sync_server.ingest import evaluation_row

KEY = secrets.token_bytes(32)


def rows(received_at="2026-11-27T00:00:00Z"):
    made = []
    for seq, extra in enumerate(
        [
            {},
            {"tags": ["D201", "D202"], "comment": "窗口人员态度 \U0001f600 \x7f"},
            {"window_id": "w-01", "staff_id": "s-9", "org_id": "o-1", "case_no": "C1",
             "service_no": "S1", "uptime_ms": 2**40, "boot_id": "b0000001"},
        ],
        start=1,
    ):  # fmt: skip
        rec = bench_record("kp-fast", seq, KEY, **extra)
        row = evaluation_row(rec, received_at, {})
        row["repeat_of"] = "kp-fast:1" if seq == 3 else None
        made.append(row)
    made[1]["excluded"] = True
    return made


def table(engine):
    with engine.connect() as conn:
        return conn.execute(select(db.evaluations).order_by(db.evaluations.c.id)).all()


def empty(engine):
    with engine.begin() as conn:
        conn.execute(db.evaluations.delete())


def test_the_fast_insert_stores_what_sqlalchemy_stores(engine, monkeypatch):
    taken = []
    unnest = features._insert_unnest
    monkeypatch.setattr(features, "_insert_unnest", lambda *a: taken.append(1) or unnest(*a))
    features._SQLITE_INSERT.clear()
    with engine.begin() as conn:
        features._insert_new(conn, engine, rows())
        # a repeat of a stored id is skipped: the first stays
        features._insert_new(conn, engine, rows("2026-11-28T00:00:00Z")[:1])
    fast = table(engine)
    assert len(taken if engine.dialect.name == "postgresql" else features._SQLITE_INSERT) >= 1
    empty(engine)
    with engine.begin() as conn:
        conn.execute(db.insert_ignoring_duplicates(engine, db.evaluations, "id"), rows())
    assert fast == table(engine)
    assert [(r.id, r.excluded, r.reason_owed, r.received_at) for r in fast] == [
        ("kp-fast:1", False, False, "2026-11-27T00:00:00Z"),
        ("kp-fast:2", True, False, "2026-11-27T00:00:00Z"),
        ("kp-fast:3", False, True, "2026-11-27T00:00:00Z"),  # a 差评 without a reason
    ]
    assert fast[1].tags == '["D201", "D202"]' and fast[2].uptime_ms == 2**40


def test_rows_without_a_defaulted_column_go_through_sqlalchemy(engine):
    short = rows()
    for row in short:
        del row["excluded"]  # SQLAlchemy fills in its default, the driver would not
    with engine.begin() as conn:
        features._insert_new(conn, engine, short)
    assert [r.excluded for r in table(engine)] == [False, False, False]


def test_a_value_too_long_is_refused_not_cut_on_postgresql(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps a string of any length")
    long = rows()
    long[1]["window_id"] = "w" * 65  # the column holds 64
    with pytest.raises(DataError, match="value too long"):
        with engine.begin() as conn:
            features._insert_new(conn, engine, long)
    assert table(engine) == []


def test_postgresql_leaves_out_a_column_none_in_every_row_and_stores_the_same(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's driver takes each row's values as they are")
    features._PG_INSERT.clear()
    with engine.begin() as conn:
        features._insert_new(conn, engine, rows()[:1])  # no window, comment, tags ...
    sent = list(features._PG_INSERT)
    assert len(sent) == 1
    assert "window_id" not in sent[0] and "comment" not in sent[0] and "id" in sent[0]
    assert "excluded" in sent[0] and "reason_owed" in sent[0]  # never left out
    fast = table(engine)
    empty(engine)
    with engine.begin() as conn:
        conn.execute(db.insert_ignoring_duplicates(engine, db.evaluations, "id"), rows()[:1])
    assert fast == table(engine)
