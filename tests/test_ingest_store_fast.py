"""features.store_evaluations' insert on SQLite: rows straight to the driver
store exactly what SQLAlchemy's insert stores."""

import secrets

import pytest
from sqlalchemy import select

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


@pytest.fixture
def two(tmp_path):
    engines = [db.make_engine(f"sqlite:///{tmp_path / name}") for name in ("fast.db", "sa.db")]
    for engine in engines:
        db.init(engine)
    yield engines
    for engine in engines:
        engine.dispose()


def test_the_driver_path_stores_what_sqlalchemy_stores(two):
    fast, plain = two
    features._SQLITE_INSERT.clear()
    with fast.begin() as conn:
        features._insert_new(conn, fast, rows())
        # a repeat of a stored id is skipped: the first stays
        features._insert_new(conn, fast, rows("2026-11-28T00:00:00Z")[:1])
    with plain.begin() as conn:
        conn.execute(db.insert_ignoring_duplicates(plain, db.evaluations, "id"), rows())
    assert len(features._SQLITE_INSERT) == 1, "the driver's path was taken"
    stored = table(fast)
    assert stored == table(plain)
    assert [(r.id, r.excluded, r.reason_owed, r.received_at) for r in stored] == [
        ("kp-fast:1", False, False, "2026-11-27T00:00:00Z"),
        ("kp-fast:2", True, False, "2026-11-27T00:00:00Z"),
        ("kp-fast:3", False, True, "2026-11-27T00:00:00Z"),  # a 差评 without a reason
    ]
    assert stored[1].tags == '["D201", "D202"]' and stored[2].uptime_ms == 2**40


def test_rows_without_a_defaulted_column_go_through_sqlalchemy(two):
    fast, _ = two
    short = rows()
    for row in short:
        del row["excluded"]  # SQLAlchemy fills in its default, the driver would not
    with fast.begin() as conn:
        features._insert_new(conn, fast, short)
    assert [r.excluded for r in table(fast)] == [False, False, False]
