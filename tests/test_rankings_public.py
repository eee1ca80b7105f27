# ruff: noqa: F811 (the site fixture is imported from test_rankings)
"""The public page's caching: Cache-Control and an ETag, 304 for a phone that
has the page, and repeated views inside the cache time answered without the
database (counted with SQLAlchemy's statement events)."""

from __future__ import annotations

import contextlib
import re

from sqlalchemy import event

from tests.harness.records import add_evaluation
from tests.test_rankings import _login, site  # noqa: F401 (site: a fixture)


@contextlib.contextmanager
def statements(engine):
    """The SQL statements the engine runs inside the block."""
    seen = []

    def count(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_a_crowd_of_phones_is_answered_from_the_cache_with_an_etag(site):
    engine = site.extensions["hcp_engine"]
    phone = site.test_client()
    first = phone.get("/public?period=2026-10")
    assert first.status_code == 200
    assert first.headers["Cache-Control"] in ("public, max-age=60", "max-age=60, public")
    etag = first.headers["ETag"]
    assert etag.startswith('"') and len(etag) > 2
    with statements(engine) as seen:
        again = site.test_client().get("/public?period=2026-10")
        unchanged = site.test_client().get(
            "/public?period=2026-10", headers={"If-None-Match": etag}
        )
    assert seen == []  # neither touched the database
    assert again.status_code == 200 and again.headers["ETag"] == etag
    assert again.get_data() == first.get_data()
    assert unchanged.status_code == 304 and unchanged.get_data() == b""
    stale = phone.get("/public?period=2026-10", headers={"If-None-Match": '"not-this-one"'})
    assert stale.status_code == 200 and stale.get_data() == first.get_data()


def test_without_the_cache_a_new_rating_changes_the_page_and_its_etag(site):
    engine = site.extensions["hcp_engine"]
    site.config["HCP_PUBLIC_CACHE_SECONDS"] = 0
    phone = site.test_client()
    before = phone.get("/public?period=2026-10")
    assert before.headers["Cache-Control"] in ("public, max-age=0", "max-age=0, public")
    add_evaluation(engine, "late:1", 5, rated_at="2026-10-22T02:00:00Z", window_id="C01")
    with statements(engine) as seen:
        after = phone.get(
            "/public?period=2026-10", headers={"If-None-Match": before.headers["ETag"]}
        )
    assert seen != []
    assert after.status_code == 200 and after.headers["ETag"] != before.headers["ETag"]
    # 齐都镇's first figure, its valid ratings: 5 before, 6 now
    assert valid_of_qd(before) == "5" and valid_of_qd(after) == "6"


def valid_of_qd(response) -> str:
    units = response.get_data(as_text=True).split('id="units"')[1]
    qd = units.split("齐都镇便民服务中心")[1].split("</section>")[0]
    return re.findall(r"<dd[^>]*>([^<]*)</dd>", qd)[0]


def test_a_logged_in_user_gets_a_private_answer_and_a_bad_period_is_not_cached(site):
    admin = _login(site, "admin")
    mine = admin.get("/public?period=2026-10")
    assert mine.status_code == 200
    assert mine.headers["Cache-Control"] in ("private, max-age=60", "max-age=60, private")
    refused = site.test_client().get("/public?period=2999-01")
    assert refused.status_code == 400 and "ETag" not in refused.headers
    assert "public" not in refused.headers.get("Cache-Control", "")
