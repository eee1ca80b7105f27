"""The figures bench builds its ratings and their figures in the database
itself; the figures it builds are exactly those ingest keeps for the same
ratings, on SQLite and PostgreSQL; and the section runs end to end."""

from __future__ import annotations

import contextlib
import json

import pytest
from sqlalchemy import select, text

from hcp import bench_figures
from sync_server import create_app, db, figures, org
from tests.harness.databases import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def bench_app(request, tmp_path):
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'b.db'}"
        else:
            url = stack.enter_context(postgres_database())
        app = create_app(
            {"DATABASE_URL": url, "SECRET_KEY": "x"}, instance_path=str(tmp_path / "instance")
        )
        yield app
        app.extensions["hcp_engine"].dispose()


def _odd_ratings(pairs) -> list[dict]:
    """Ratings the generator never makes: placed by org_id only, placed
    nowhere, a repeat, a duplicate and a blank tag, a rating just before local
    midnight, a window moved mid-year (see the test)."""
    window, staff = pairs[0]
    base = {
        "stars": 2, "channel": "keypad", "clock": "ntp", "origin": "citizen", "attempt": 1,
        "time_source": "device", "excluded": False, "reason_owed": False, "tags": None,
        "org_id": None, "window_id": None, "staff_id": None, "item_code": None, "repeat_of": None,
    }  # fmt: skip
    made = [
        {"id": "x1", "org_id": "370305002", "tags": json.dumps(["H201", "H201", " "])},
        {"id": "x2", "tags": json.dumps([])},
        {"id": "x3", "window_id": window, "staff_id": staff, "repeat_of": "x1"},
        {"id": "x4", "window_id": "W0000", "staff_id": "nobody", "at": "2026-03-31T15:59:59Z"},
        {"id": "x5", "window_id": "W0000", "at": "2026-08-31T16:00:00Z", "stars": 5},
        {"id": "x6", "staff_id": "P0001b", "item_code": "I007", "channel": "web", "stars": 1},
    ]
    rows = []
    for extra in made:
        at = extra.pop("at", "2026-05-05T02:03:04Z")
        rows.append({**base, "rated_at": at, "received_at": at, "effective_at": at, **extra})
    return rows


def test_the_fast_build_gives_the_figures_ingest_keeps_for_the_same_ratings(bench_app):
    engine = bench_app.extensions["hcp_engine"]
    pairs = bench_figures.build_org(engine)
    assert len(pairs) == 120
    with engine.begin() as conn:  # W0000 moves to another hall on 2026-07-01
        org.move(conn, "windows", "W0000", "hall-05", at="2026-07-01T00:00:00Z")
    bench_figures.fill(engine, 4_000, pairs)
    with engine.begin() as conn:
        conn.execute(db.evaluations.insert(), _odd_ratings(pairs))
    bench_figures.fill_figures(engine)
    with engine.connect() as conn:
        fast = figures.all_rows(conn)
        stored = conn.execute(select(*figures._FIELDS).order_by(db.evaluations.c.id)).all()
    rows = [dict(row._mapping) for row in stored]
    # what ingest keeps: the same ratings, stored in batches through after_store
    with engine.begin() as conn:
        conn.execute(figures.figures_daily.delete())
        for start in range(0, len(rows), 700):
            figures.after_store(conn, rows[start : start + 700])
        ingested = figures.all_rows(conn)
    assert fast == ingested
    dims = {row[0] for row in fast}
    assert dims == {d + m for d in figures.STORED_DIMS for m in ("", figures.MONTHLY)}
    # the odd ratings landed where ingest puts them
    keys = {row[:5] for row in fast}
    assert ("unit", "2026-05-05", "370305002", "keypad", "") in keys  # by its org_id
    assert ("unit", "2026-05-05", "", "keypad", "") in keys  # placed nowhere
    assert ("tag", "2026-05-05", "370305002", "keypad", " ") in keys
    assert ("unit", "2026-03-31", "hall-00", "keypad", "") in keys  # 23:59:59 local
    assert ("window", "2026-09-01", "hall-05", "keypad", "W0000") in keys  # after the move


def test_the_generated_ratings_have_the_shape_of_a_district_year(bench_app):
    engine = bench_app.extensions["hcp_engine"]
    pairs = bench_figures.build_org(engine)
    bench_figures.fill(engine, 20_000, pairs)
    with engine.connect() as conn:

        def one(sql):
            return conn.execute(text(sql)).scalar()

        assert one("SELECT count(*) FROM evaluations") == 20_000
        assert one("SELECT count(DISTINCT id) FROM evaluations") == 20_000
        bad = one("SELECT count(*) FROM evaluations WHERE stars <= 2")
        assert 300 <= bad <= 500  # about 2 %
        assert one("SELECT count(DISTINCT substr(effective_at, 1, 10)) FROM evaluations") == 365
        assert one("SELECT min(effective_at) FROM evaluations") >= "2026-01-01"
        assert one("SELECT max(effective_at) FROM evaluations") < "2027-01-01"
        channels = {r[0] for r in conn.execute(text("SELECT DISTINCT channel FROM evaluations"))}
        assert channels == {name for name, _share, _online in bench_figures.CHANNEL_SHARES}
        assert one("SELECT count(*) FROM evaluations WHERE window_id IS NULL") == one(
            "SELECT count(*) FROM evaluations WHERE channel IN ('web', 'qr_case', 'sms')"
        )
        assert one("SELECT count(DISTINCT staff_id) FROM evaluations") == 240
        assert one("SELECT count(DISTINCT item_code) FROM evaluations") == bench_figures.ITEMS
        voided = one("SELECT count(*) FROM evaluations WHERE excluded")
        assert 5 <= voided <= 40  # about 1 in 1000
        owed = one("SELECT count(*) FROM evaluations WHERE reason_owed")
        untagged_bad = one("SELECT count(*) FROM evaluations WHERE stars <= 2 AND tags IS NULL")
        assert owed == untagged_bad > 0
        # every index of the table is back after the bulk load
        names = {index.name for index in db.evaluations.indexes}
        from sqlalchemy import inspect

        assert names <= {index["name"] for index in inspect(conn).get_indexes("evaluations")}


def test_the_section_reports_each_request_against_count(tmp_path, capsys):
    (result,) = bench_figures.section(["sqlite"], 500)
    assert result["database"] == "sqlite" and result["ratings"] == 500
    timed = [label for label, value in result.items() if isinstance(value, dict)]
    assert timed == ["baseline count(*)"] + [label for label, _path in bench_figures.REQUESTS]
    assert all(set(result[label]) == {"p50_ms", "p95_ms"} for label in timed)
    assert "goal p95 < 100 ms" in capsys.readouterr().out
