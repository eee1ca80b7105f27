"""sync_server.canonical_fast gives protocols.canonical's bytes, or its error, for any value."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import canonical, sign
from sync_server import canonical_fast
from tests.harness.records import KEY, signed

# every character class canonical JSON treats apart: controls, DEL, quote,
# backslash, lone surrogates, non-BMP, CJK, the line separators
TEXT = st.text(
    st.one_of(
        st.characters(codec=None),
        st.sampled_from(['"', "\\", "\x00", "\x1f", "\x7f", "\u2028", "好", "😀", "\ud800"]),
    ),
    max_size=12,
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    TEXT,
    st.floats(allow_nan=True),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(TEXT, inner, max_size=4),
        st.dictionaries(st.integers(), inner, min_size=1, max_size=2),
    ),
    max_leaves=12,
)


# what records are made of: the values that take the fast path
PLAIN = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=10,
)


def outcome(encode, value):
    try:
        return ("bytes", encode(value))
    except Exception as exc:  # noqa: BLE001 - the error class must match too
        return ("error", type(exc).__name__)


@settings(max_examples=800, deadline=None)
@given(VALUES)
def test_any_value_gives_the_same_bytes_or_the_same_error(value):
    assert outcome(canonical_fast.dumps, value) == outcome(canonical.dumps, value)


RECORD_FIELDS = st.dictionaries(
    st.sampled_from(["comment", "case_no", "tags", "zeta", "A", "é", "好"]),
    st.one_of(TEXT, st.lists(TEXT, max_size=3), st.integers(0, 2**40), st.booleans()),
    max_size=4,
)


@settings(max_examples=1500, deadline=None)
@given(PLAIN)
def test_record_shaped_values_give_the_same_bytes_or_the_same_error(value):
    assert outcome(canonical_fast.dumps, value) == outcome(canonical.dumps, value)


@settings(max_examples=800, deadline=None)
@given(RECORD_FIELDS)
def test_a_signature_verifies_the_same_with_either_encoder(extra):
    record = signed(7, 3)
    record.update(extra)
    for encode in (canonical.dumps, canonical_fast.dumps):
        assert outcome(lambda r, e=encode: sign.verify(r, KEY, e), record) == outcome(
            lambda r: sign.verify(r, KEY), record
        )


class Loud(str):
    """A str subclass: the fast path must not trust it."""


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [True, None, "x"]},
        {"comment": "line\nbreak"},
        {"del": "\x7f"},
        {"quote": 'say "好"'},
        {"emoji": "😀", "cjk": "差评"},
        {"n": 2**63},
        {1: "int key"},
        {"f": 1.5},
        Loud("x"),
        {"s": "\ud800"},
    ],
)
def test_the_hard_cases(value):
    assert outcome(canonical_fast.dumps, value) == outcome(canonical.dumps, value)
