"""Fuzzing the one parser of outside input the outbox has: the province's
answer. Whatever comes back, the sender gets either results that name each
item sent with a known status, or SendFailed with a state the page shows."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_server.outbox_sender import SendFailed, read_answer

ITEMS = [
    {"projectNo": "C1", "serviceNo": "1"},
    {"evaluationId": "kp-01:1", "projectNo": "C1", "serviceNo": "1"},
]
STATES = {"credential", "error", "garbage", "no_reason"}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["results", "msg", "id", "status", "reason", "x"]), children, max_size=4
        )
    ),  # fmt: skip
    max_leaves=20,
)
RESULT = st.fixed_dictionaries(
    {"id": st.sampled_from(["C1/1", "kp-01:1", "x"]),
     "status": st.sampled_from(["accepted", "duplicate", "refused", "ok"])},
    optional={"reason": st.one_of(st.none(), st.text(max_size=10)), "receipt": JSON},
)  # fmt: skip


def _check(status, raw):
    try:
        results = read_answer(status, raw, ITEMS)
    except SendFailed as failure:
        assert failure.state in STATES and str(failure)
        return
    assert status == 200
    assert [r["id"] for r in results] == ["C1/1", "kp-01:1"]
    for result in results:
        assert result["status"] in ("accepted", "duplicate") or result["reason"].strip()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([200, 200, 400, 401, 500, 503]), st.binary(max_size=200))
def test_any_bytes_give_results_or_a_clear_state(status, raw):
    _check(status, raw)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([200, 401, 500]), JSON)
def test_any_json_gives_results_or_a_clear_state(status, answer):
    _check(status, json.dumps(answer).encode())


@settings(max_examples=300, deadline=None)
@given(st.lists(RESULT, min_size=0, max_size=3), JSON)
def test_answers_shaped_like_the_provinces(results, message):
    _check(200, json.dumps({"code": 0, "msg": message, "results": results}).encode())


def test_deep_nesting_is_garbage_not_a_crash():
    with pytest.raises(SendFailed) as caught:
        read_answer(200, b"[" * 100_000, ITEMS)
    assert str(caught.value) == "HTTP 200: the answer is not JSON (100000 bytes)"


def test_an_html_error_page_is_an_error_not_garbage():
    with pytest.raises(SendFailed) as caught:
        read_answer(502, b"<html>Bad Gateway</html>", ITEMS)
    assert (caught.value.state, str(caught.value)) == ("error", "HTTP 502: no message")
