"""The content tag table: the labelled demo set, a province-shaped file refused
whole with the row and column named, edits, and what a device config needs."""

from __future__ import annotations

import io

import openpyxl
import pytest
from sqlalchemy import func, select

from protocols import messages
from sync_server import db, org, tags


@pytest.fixture
def seeded(engine):
    assert tags.seed(engine) is True
    return engine


def _rows(text):
    return org.read_file(text.encode("utf-8"), "tags.csv")


def test_the_demo_set_is_labelled_as_ours_and_in_force(seeded):
    assert tags.seed(seeded) is False
    with seeded.connect() as conn:
        (version,) = tags.versions(conn)
        config = tags.device_tags(conn)
    assert version["version"] == "hcp-demo-1"
    assert version["label"] == "hcp 演示标签, 非省平台标准"
    assert config["content_version"] == "hcp-demo-1"
    assert [2, "H201", "等候时间长"] in config["tags"]
    assert all(row[1] != "H211" for row in config["tags"])  # online tags are not a keypad's
    assert config["tags"][0][0] == 5  # highest level first
    # what the function gives is a config a device takes (docs/protocol.md §3.4)
    messages.check(messages.config(1, window_id="A01", **config))


def test_a_province_file_is_imported_and_put_in_force_from_a_time(seeded):
    text = (
        "version,level,code,text,online/offline\n"
        "2027-1,5,501,非常满意服务,线下\n"
        "2027-1,2,201,等候时间过长,offline\n"
        "2027-1,2,211,网上办理不便,online\n"
    )
    with seeded.begin() as conn:
        assert tags.import_rows(conn, _rows(text), "admin") == ["2027-1"]
    with seeded.connect() as conn:
        assert tags.in_force(conn) == "hcp-demo-1"  # imported, not yet in force
    with seeded.begin() as conn:
        tags.set_in_force(conn, "2027-1", "2026-12-01T00:00:00Z", "admin")
    with seeded.connect() as conn:
        assert tags.in_force(conn, "2026-11-30T23:59:59Z") == "hcp-demo-1"
        assert tags.in_force(conn, "2026-12-01T00:00:00Z") == "2027-1"
        later = tags.device_tags(conn, at="2026-12-02T00:00:00Z")
        online = tags.device_tags(conn, "online", at="2026-12-02T00:00:00Z")
    assert later == {"content_version": "2027-1", "tags": [[5, "501", "非常满意服务"], [2, "201", "等候时间过长"]]}  # fmt: skip
    assert online["tags"] == [[2, "211", "网上办理不便"]]


def test_an_excel_file_with_chinese_headers_is_read(seeded):
    book = openpyxl.Workbook()
    book.active.append(["版本", "等级", "编码", "评价内容", "线上线下"])
    book.active.append(["x-2", 1, 101, "态度差", "线下"])
    out = io.BytesIO()
    book.save(out)
    with seeded.begin() as conn:
        tags.import_rows(conn, org.read_file(out.getvalue(), "t.xlsx"), "admin")
        assert tags.export_rows(conn, "x-2") == [
            ["version", "level", "code", "text", "mode"],
            ["x-2", 1, "101", "态度差", "offline"],
        ]


BAD = [
    ("version,level,code,text\n", "row 1, column mode: missing column"),
    ("version,level,code,text,mode,x\n", "row 1, column x: unknown column"),
    ("version,level,code,text,mode\n", "row 2, column version: no tags in the file"),
    ("version,level,code,text,mode\nv 1,5,501,好,offline\n", "row 2, column version: must be 1..32 characters of A-Z a-z 0-9 . _ -"),
    ("version,level,code,text,mode\nv1,5,501,好,offline\nv1,6,601,好,offline\n", "row 3, column level: must be 1..5"),
    ("version,level,code,text,mode\nv1,5,50 1,好,offline\n", "row 2, column code: must be 1..16 characters of A-Z a-z 0-9 . _ -"),
    ("version,level,code,text,mode\nv1,5,501,,offline\n", "row 2, column text: 1..64 characters, no control characters"),
    ("version,level,code,text,mode\nv1,5,501,好,both\n", "row 2, column mode: must be online or offline (线上/线下)"),
    ("version,level,code,text,mode\nv1,5,501,好,offline\nv1,4,501,好,offline\n", "row 3, column code: '501' already in row 2"),
    ("version,level,code,text,mode\nhcp-demo-1,5,501,好,offline\n", "row 2, column version: version 'hcp-demo-1' already exists"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD)
def test_a_malformed_tag_file_is_refused_whole(seeded, text, message):
    with pytest.raises(org.FileProblem) as caught, seeded.begin() as conn:
        tags.import_rows(conn, _rows(text), "admin")
    assert str(caught.value) == message
    with seeded.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.tag_versions)).scalar() == 1


def test_a_tag_is_edited_and_a_bad_edit_says_why(seeded):
    with seeded.begin() as conn:
        tags.save_tag(conn, "hcp-demo-1", 2, "H201", "排队太久", "offline", "admin")
        assert tags.delete_tag(conn, "hcp-demo-1", "H202") is True
        assert {"level": 2, "code": "H201", "text": "排队太久", "mode": "offline", "version": "hcp-demo-1"} in tags.tags_of(conn, "hcp-demo-1")  # fmt: skip
        with pytest.raises(org.OrgError) as caught:
            tags.save_tag(conn, "hcp-demo-1", 9, "H901", "x", "offline", "admin")
        assert str(caught.value) == "level: must be 1..5"
        with pytest.raises(org.OrgError) as caught:
            tags.save_tag(conn, "nope", 2, "H2", "x", "offline", "admin")
        assert str(caught.value) == "version: unknown 'nope'"
