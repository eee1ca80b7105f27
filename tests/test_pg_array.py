"""sync_server.pg_array: PostgreSQL reads back exactly the values given, for
text of every character class, integers at the bounds and booleans, NULLs
anywhere; what it does not write itself it leaves to psycopg."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import DataError, StatementError

from sync_server import pg_array

# PostgreSQL text holds any character but NUL (tested apart below); lone
# surrogates cannot be encoded to UTF-8 at all
TEXT = st.text(
    st.one_of(
        st.characters(codec="utf-8", exclude_characters="\x00"),
        st.sampled_from(['"', "\\", ",", "{", "}", " ", "\t", "\n", "'", "好", "😀", "\x7f"]),
    ),
    max_size=8,
) | st.sampled_from(["NULL", "null", "", " ", '\\"', "{}", "a,b", '"'])
SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def read_back(conn, value, kind):
    return conn.exec_driver_sql(f"SELECT %s::{kind}[]", (value,)).scalar()


@pytest.fixture
def pg(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's arrays")
    with engine.connect() as conn:
        yield conn


@SETTINGS
@given(st.lists(st.none() | TEXT, max_size=6))
def test_text_reads_back_as_given(pg, values):
    sent = pg_array.param(values, "text")
    assert isinstance(sent, str)
    assert read_back(pg, sent, "text") == values


@SETTINGS
@given(
    st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), max_size=6),
    st.lists(st.none() | st.booleans(), max_size=6),
)
def test_integers_and_booleans_read_back_as_given(pg, numbers, flags):
    assert read_back(pg, pg_array.param(numbers, "bigint"), "bigint") == numbers
    assert read_back(pg, pg_array.param(flags, "boolean"), "boolean") == flags


def test_a_column_it_does_not_write_goes_to_psycopg_as_it_was(pg):
    for values, kind in (
        (["a", 1], "text"),
        ([1, True], "integer"),
        ([1.5], "integer"),
        ([1, 0], "boolean"),
        (["x"], "jsonb"),
    ):
        assert pg_array.param(values, kind) is values
    assert read_back(pg, pg_array.param([1, None, 2], "smallint"), "smallint") == [1, None, 2]


def test_a_value_postgresql_cannot_hold_is_refused_as_psycopg_refuses_it(pg):
    for values in (["a\x00b"], ["ok", None, "\x00"]):
        for sent in (pg_array.param(values, "text"), values):
            with pytest.raises((DataError, StatementError)) as caught:
                read_back(pg, sent, "text")
            assert "NUL" in str(caught.value)
            pg.rollback()
