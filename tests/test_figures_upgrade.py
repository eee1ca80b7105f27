"""An upgrade to migration 0017 (figures per channel) leaves the figures of a
database that holds ratings empty, and the collector's next start rebuilds
them from the evaluations, now per channel."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect, text

from sync_server import create_app, db, figures
from tests.harness.databases import postgres_database

RATING = (
    "INSERT INTO evaluations (id, stars, channel, rated_at, clock, origin, attempt,"
    " received_at, effective_at, time_source, excluded, reason_owed, org_id)"
    " VALUES (:id, :stars, :channel, '2026-11-26T15:30:00Z', 'ntp', 'citizen', 1,"
    " '2026-11-26T15:30:01Z', '2026-11-26T15:30:00Z', 'device', false, false, '370305001')"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def old_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
    else:
        with postgres_database() as url:
            yield url


def test_a_database_of_0016_gets_its_figures_rebuilt_per_channel_on_start(old_url, tmp_path):
    engine = db.make_engine(old_url)
    with engine.begin() as conn:
        command.upgrade(db.alembic_config(conn), "0016")
        conn.execute(text(RATING), {"id": "kp-01:1", "stars": 5, "channel": "keypad"})
        conn.execute(text(RATING), {"id": "web/1", "stars": 1, "channel": "web"})
        # the old shape: the channel was the key of the unit rows only
        conn.execute(
            text(
                "INSERT INTO figures_daily (dim, day, unit_id, key, n1, n2, n3, n4, n5)"
                " VALUES ('unit', '2026-11-26', '370305001', 'keypad', 0, 0, 0, 0, 1)"
            )
        )
    engine.dispose()
    app = create_app(
        {"DATABASE_URL": old_url, "SECRET_KEY": "t", "WTF_CSRF_ENABLED": False},
        instance_path=str(tmp_path / "instance"),
    )
    engine = app.extensions["hcp_engine"]
    try:
        columns = [c["name"] for c in inspect(engine).get_columns("figures_daily")]
        assert columns == ["dim", "day", "unit_id", "channel", "key", "n1", "n2", "n3", "n4", "n5"]
        assert inspect(engine).get_indexes("figures_daily") == []
        with engine.connect() as conn:
            # 23:30 in Shanghai on the 26th; both ratings rebuilt, each under its channel
            by_channel = figures.level_counts(conn, "channel", "2026-11-26", "2026-11-26")
            assert by_channel == {"keypad": [0, 0, 0, 0, 1], "web": [1, 0, 0, 0, 0]}
            hours = figures.level_counts(conn, "hour", None, None, channel="web")
            assert hours == {"23": [1, 0, 0, 0, 0]}
            assert figures.level_counts(conn, "unit", "2026-11-27", None) == {}
    finally:
        engine.dispose()
