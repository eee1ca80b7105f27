"""Exports: the evaluations as Excel and CSV in the office layout, streamed
(memory stays flat however many rows: measured with tracemalloc, not timed),
scoped to a unit manager's subtree, never with a rater's contact."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import openpyxl
import pytest

from sync_server import exports
from tests.harness.records import CONTACT, add_evaluation
from tests.test_access import OTHER_CONTACT, build_world, client_as


@pytest.fixture
def app(engine_app):
    engine = build_world(engine_app)  # ws:1 (1 star) at A01 in 闻韶, xg:1 (2) at B01 in 雪宫
    add_evaluation(engine, "kp-01:5", 5, "2026-11-20T01:00:00Z", window_id="A01", tags='["501"]')
    add_evaluation(engine, "kp-01:6", 4, "2026-11-21T01:00:00Z", window_id="A01", excluded=True)
    return engine_app


def sheet_rows(data: bytes) -> list[list]:
    workbook = openpyxl.load_workbook(io.BytesIO(data))
    return [list(row) for row in workbook.active.iter_rows(values_only=True)]


def test_the_supervisor_exports_every_rating_to_excel_in_the_office_layout(app):
    response = client_as(app, "supervisor").get("/evaluations/export?format=xlsx")
    assert response.status_code == 200 and response.is_streamed
    assert response.headers["Content-Disposition"] == "attachment; filename=hcp-evaluations.xlsx"
    rows = sheet_rows(response.data)
    assert rows[0][0] == "评价记录"
    assert rows[1][:2] == ["统计时段", "— — —"]
    assert rows[2][:2] == ["单位", "全部单位"]
    assert rows[4][:4] == ["记录", "时间（UTC）", "评价等级", "评价渠道"]
    body = {row[0]: row for row in rows[5:9]}
    assert list(body) == ["kp-01:5", "kp-01:6", "ws:1", "xg:1"]  # oldest first
    assert body["kp-01:5"][:5] == ["kp-01:5", "2026-11-20T01:00:00Z", "非常满意", "keypad", "501"]
    assert body["ws:1"][11] == "hall-ws" and body["xg:1"][11] == "hall-xg"  # unit of the time
    assert body["kp-01:6"][14] == "是"  # voided
    assert rows[10][:2] == ["合计", 4]
    assert rows[11][:2] == ["计入统计（未作废、非重复）", 3]
    levels = [row[:2] for row in rows[12:]]
    assert levels == [
        ["非常满意", 1],
        ["满意", 0],
        ["基本满意", 0],
        ["不满意", 1],
        ["非常不满意", 1],
    ]
    text = response.data.decode("latin-1")
    assert CONTACT not in text and OTHER_CONTACT not in text


def test_a_unit_manager_exports_only_their_units_ratings_as_csv(app):
    response = client_as(app, "unit_manager").get("/evaluations/export?format=csv&since=2026-11-01")
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff评价记录\r\n统计时段,2026-11-01 — —\r\n")
    assert "单位,闻韶街道 (370305001)" in text
    assert "ws:1," in text and "kp-01:5," in text
    assert "xg:1" not in text and "雪宫的差评" not in text
    assert CONTACT not in text and OTHER_CONTACT not in text
    assert "合计,3\r\n" in text


def test_a_bad_filter_or_format_is_refused(app):
    client = client_as(app, "admin")
    bad = client.get("/evaluations/export?format=csv&stars=9")
    assert bad.status_code == 400 and "stars: must be integers 1..5" in bad.get_data(as_text=True)
    assert client.get("/evaluations/export?format=pdf").status_code == 404
    assert client_as(app, "technician").get("/evaluations/export?format=csv").status_code == 403


def test_the_workbook_is_a_valid_zip_with_text_escaped(app):
    rows = [["标题 <b>&</b>"], ["a\x01b", 1, 2.5, None, True, "=SUM(A1)"]]
    data = b"".join(exports.xlsx_chunks(iter(rows), "评价[1]/x"))
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    workbook = openpyxl.load_workbook(io.BytesIO(data))
    assert workbook.sheetnames == ["评价1x"]
    assert [list(r) for r in workbook.active.iter_rows(values_only=True)] == [
        ["标题 <b>&</b>", None, None, None, None, None],
        ["ab", 1, 2.5, None, "True", "=SUM(A1)"],  # text, never a formula
    ]


# --- memory stays flat -----------------------------------------------------------------


def _rows(count):
    for n in range(count):
        yield [f"kp-09:{n}", "2026-11-26T08:30:00Z", "非常满意", "keypad", "501", "窗口服务很好",
               "C1", "1", "I01", "A01", "P01", "hall-ws", "citizen", 1, "", None]  # fmt: skip


def _peak(chunks) -> tuple[int, int]:
    """Peak memory traced while the chunks are made and thrown away, and the bytes made."""
    tracemalloc.start()
    try:
        size = sum(len(chunk) for chunk in chunks)
        return tracemalloc.get_traced_memory()[1], size
    finally:
        tracemalloc.stop()


def test_csv_memory_stays_flat_over_200k_rows():
    small, small_size = _peak(exports.csv_chunks(_rows(20_000)))
    large, large_size = _peak(exports.csv_chunks(_rows(200_000)))
    assert large_size > 9 * small_size  # ten times the rows really went through
    assert large < small * 1.5 + 256 * 1024, (small, large)
    assert large < 4 * 1024 * 1024


def test_excel_memory_stays_flat_as_rows_grow_tenfold():
    small, small_size = _peak(exports.xlsx_chunks(_rows(5_000), "t"))
    large, large_size = _peak(exports.xlsx_chunks(_rows(50_000), "t"))
    assert large_size > 5 * small_size
    assert large < small * 1.5 + 256 * 1024, (small, large)
    assert large < 8 * 1024 * 1024


def test_the_evaluations_stream_from_the_database_in_flat_memory(tmp_path):
    """From the table through the unit resolver to CSV: 30,000 stored ratings
    take no more memory than 3,000."""
    from sqlalchemy import delete

    from sync_server import db
    from tests.harness.collector import make_app

    app = make_app(tmp_path)
    engine = app.extensions["hcp_engine"]

    def fill(count):
        with engine.begin() as conn:
            conn.execute(delete(db.evaluations))
            conn.execute(
                db.evaluations.insert(),
                [
                    dict(id=f"kp-09:{n}", device_id="kp-09", seq=n, stars=1 + n % 5,
                         channel="keypad", tags='["501"]', comment="窗口服务很好",
                         window_id="A01", rated_at="2026-11-26T08:30:00Z", clock="ntp",
                         origin="citizen", attempt=1, received_at="2026-11-26T08:30:00Z",
                         effective_at="2026-11-26T08:30:00Z", time_source="device",
                         excluded=False, reason_owed=False)
                    for n in range(count)
                ],
            )  # fmt: skip

    def measure():
        with app.test_request_context("/"), engine.connect() as conn:
            return _peak(exports.csv_chunks(exports.evaluation_rows(conn, {}, "t", "u")))

    fill(3_000)
    small, small_size = measure()
    fill(30_000)
    large, large_size = measure()
    assert large_size > 9 * small_size
    assert large < small * 1.5 + 512 * 1024, (small, large)
