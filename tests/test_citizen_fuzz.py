"""The parsers of the citizen channels under arbitrary input (hypothesis):
SMS replies, the public rating forms and the portal. No input breaks them
(no 500), and whatever one stores is a whole rating of the window asked.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.levels import STARS
from sync_server import sms
from tests.harness.collector import CSRF_FIELD
from tests.test_citizen import build, ratings

TEXT = st.text(max_size=400)
FIELD_NAMES = ("stars", "case_no", "step", "form_token", "content_version", "tags", "comment",
               "phone", "consent", "check")  # fmt: skip


@given(TEXT)
def test_any_reply_parses_to_a_level_or_nothing(text):
    parsed = sms.parse(text)
    if parsed is not None:
        stars, reason = parsed
        assert stars in STARS
        assert reason is None or (reason and reason == reason.strip(sms.SEPARATORS))


@given(st.sampled_from(["1", "２", "满意", "非常不满意"]), TEXT)
def test_a_level_then_any_text_keeps_the_level(head, tail):
    parsed = sms.parse(head + " " + tail)
    assert parsed is not None and parsed[0] == sms.parse(head)[0]


def test_the_public_forms_survive_any_fields(app):
    build(app)
    client = app.test_client()
    token = CSRF_FIELD.search(client.get("/r/w/B01").get_data(as_text=True)).group(1)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.sampled_from(["/r/w/B01", "/r/w/A01", "/rate", "/followup", "/r/c/1-20991231-" + "0" * 24]),
        st.dictionaries(st.sampled_from(FIELD_NAMES), st.one_of(TEXT, st.lists(TEXT, max_size=3))),
    )  # fmt: skip
    def post(path, fields):
        response = client.post(path, data={"csrf_token": token, **fields})
        assert response.status_code in (200, 302, 400, 404, 409, 410, 413, 429), response.status
        stored = ratings(app)
        for rating in stored:  # whatever got in is a whole, valid rating of B01
            assert rating["window_id"] in ("A01", "B01") and rating["stars"] in STARS
            assert not re.search(r"[<>]", rating["comment"] or "")

    post()
