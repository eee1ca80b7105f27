"""The index on cases.due_at (migration 0014): present on both databases after
the migrations, and the one SQLite picks for the deadline range the digest,
the overdue filter and the rankings ask."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select

from sync_server.schema_cases import cases


def test_the_migrated_cases_table_has_the_due_at_index(engine):
    found = {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("cases")}
    assert found["ix_cases_due_at"] == ["due_at"]


def test_sqlite_plans_the_deadline_range_with_it(engine):
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's plan depends on its statistics; the index is checked above")
    c = cases.c
    query = select(c.id).where(
        c.due_at >= "2026-10-01T00:00:00Z", c.due_at < "2026-11-01T00:00:00Z"
    )
    compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        plan = " ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
    assert "USING INDEX ix_cases_due_at" in plan or "USING COVERING INDEX ix_cases_due_at" in plan
