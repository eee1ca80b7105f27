"""The figures bench runs end to end on a small number of ratings, and the
figures it builds count every generated rating once."""

from __future__ import annotations

from sqlalchemy import text

from hcp import bench_figures
from sync_server import create_app, figures


def test_the_generated_ratings_are_counted_once_by_the_rebuilt_figures(tmp_path):
    app = create_app(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}", "SECRET_KEY": "x"},
        instance_path=str(tmp_path / "instance"),
    )
    engine = app.extensions["hcp_engine"]
    pairs = bench_figures.build_org(engine)
    assert len(pairs) == 120
    bench_figures.fill(engine, 3_000, pairs)
    with engine.begin() as conn:
        assert figures.rebuild(conn) == 3_000
        by_unit = figures.totals(conn, "unit", None, None, unit="370305", rate_stars=(5, 4, 3))
        assert sum(row["valid"] for row in by_unit.values()) == 3_000
        assert conn.execute(text("SELECT count(*) FROM evaluations")).scalar() == 3_000


def test_the_section_reports_each_request_against_count(tmp_path, capsys):
    (result,) = bench_figures.section(["sqlite"], 500)
    assert result["database"] == "sqlite" and result["ratings"] == 500
    timed = [label for label, value in result.items() if isinstance(value, dict)]
    assert timed == ["baseline count(*)"] + [label for label, _path in bench_figures.REQUESTS]
    assert all(set(result[label]) == {"p50_ms", "p95_ms"} for label in timed)
    assert "goal p95 < 100 ms" in capsys.readouterr().out
