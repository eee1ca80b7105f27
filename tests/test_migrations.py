"""The Alembic migrations build exactly the schema that db.py describes."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from sync_server import db


def test_migrations_match_the_schema_in_code(engine):
    # `engine` was initialised through db.init(), i.e. by the migrations
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert context.get_current_revision() == "0019"
        assert compare_metadata(context, db.metadata) == []


def test_init_is_idempotent(engine):
    db.init(engine)
    db.init(engine)
    names = set(inspect(engine).get_table_names())
    assert {"evaluations", "quarantine", "devices", "users", "alembic_version"} <= names


def test_upgrading_keeps_existing_ratings_and_gives_them_their_device_time(tmp_path):
    from alembic import command
    from sqlalchemy import text

    engine = db.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(db.alembic_config(conn), "0001")
        conn.execute(
            text(
                "INSERT INTO evaluations (id, stars, channel, rated_at, clock, origin, attempt,"
                " received_at, excluded) VALUES ('kp-01:1', 2, 'keypad', '2026-11-20T01:02:03Z',"
                " 'ntp', 'citizen', 1, '2026-11-20T01:02:04.000000Z', false)"
            )
        )
    db.init(engine)
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT stars, rated_at, effective_at, time_source FROM evaluations")
        ).one()
    assert tuple(row) == (2, "2026-11-20T01:02:03Z", "2026-11-20T01:02:03Z", "device")
    engine.dispose()


EVALUATION_INDEXES = {
    "ix_evaluations_device_seq": ["device_id", "seq"],
    "ix_evaluations_effective_at": ["effective_at"],
    "ix_evaluations_boot": ["device_id", "boot_id"],
    "ix_evaluations_stars": ["stars"],
    "ix_evaluations_window_id": ["window_id"],
    "ix_evaluations_staff_id": ["staff_id"],
    "ix_evaluations_org_id": ["org_id"],
    "ix_evaluations_case_no": ["case_no", "service_no"],
}


def test_the_evaluations_keep_only_the_indexes_a_query_uses(engine):
    """0019 dropped the index on rated_at, which no query reads by."""
    found = {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("evaluations")}
    assert found == EVALUATION_INDEXES


def test_migration_0019_goes_down_and_up_again(tmp_path):
    from alembic import command

    engine = db.make_engine(f"sqlite:///{tmp_path / 'both.db'}")
    db.init(engine)
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "0018")
    found = {ix["name"] for ix in inspect(engine).get_indexes("evaluations")}
    assert found == {*EVALUATION_INDEXES, "ix_evaluations_rated_at"}
    db.init(engine)
    found = {ix["name"] for ix in inspect(engine).get_indexes("evaluations")}
    assert found == set(EVALUATION_INDEXES)
    engine.dispose()
