"""The organisation: Linzi's seed, the tree, moves that keep history, and
files refused whole with the row and column named. Runs on both databases."""

from __future__ import annotations

import io

import openpyxl
import pytest
from sqlalchemy import func, select

from sync_server import db, org
from tests.harness.records import add_evaluation


@pytest.fixture
def seeded(engine):
    assert org.seed(engine) is True
    return engine


def test_first_start_seeds_linzi_and_a_second_start_does_not(seeded):
    assert org.seed(seeded) is False
    with seeded.connect() as conn:
        units = {u["id"]: u for u in org.units(conn)}
        (district,) = org.tree(conn)
    assert len(units) == 13
    assert units["370305"] == {
        "id": "370305",
        "name": "临淄区",
        "kind": "district",
        "retired_at": None,
        "parent": None,  # Zibo (3703) is not in the table: the district is the root
    }
    assert units["370305107"]["name"] == "金岭回族镇"
    assert units["370305107"]["parent"] == "370305"
    names = [child["name"] for child in district["children"]]
    assert names[:2] == ["闻韶街道", "雪宫街道"] and len(names) == 12


def test_the_seed_file_is_the_shipped_copy_of_the_division_table():
    rows = org.read_file(org.SEED_FILE.read_bytes(), "linzi_divisions.csv")
    assert rows[0] == ["code", "name", "kind", "parent"]
    assert rows[1] == ["370305", "临淄区", "district", "3703"]
    assert len(rows) == 14


def _build(conn):
    org.add(conn, "units", "370305001201", "某某社区", "370305001", kind="community")
    org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
    org.add(conn, "units", "hall-xg", "雪宫街道便民服务中心", "370305002", kind="hall")
    org.add(conn, "windows", "A01", "综合受理一号窗", "hall-ws")
    org.add(conn, "staff", "1001", "张三", "hall-ws")


def test_a_rating_keeps_the_unit_of_its_time_across_a_move(seeded):
    with seeded.begin() as conn:
        _build(conn)
    add_evaluation(seeded, "kp-01:1", 5, "2026-11-20T02:00:00Z", window_id="A01", staff_id="1001")
    with seeded.begin() as conn:
        org.move(conn, "windows", "A01", "hall-xg", at="2026-11-21T00:00:00Z")
        org.move(conn, "staff", "1001", "hall-xg", at="2026-11-22T00:00:00Z")
    add_evaluation(seeded, "kp-01:2", 1, "2026-11-21T02:00:00Z", window_id="A01", staff_id="1001")
    add_evaluation(seeded, "kp-01:3", 4, "2026-11-23T02:00:00Z", window_id="A01", staff_id="1001")
    # no window: the staff member's unit of the time; neither: the org_id carried
    add_evaluation(seeded, "kp-01:4", 4, "2026-11-21T02:00:00Z", staff_id="1001")
    add_evaluation(seeded, "kp-01:5", 4, "2026-11-21T02:00:00Z", org_id="370305103")
    add_evaluation(seeded, "kp-01:6", 4, "2026-11-21T02:00:00Z")
    with seeded.connect() as conn:
        found = {f"kp-01:{n}": org.rating_unit(conn, f"kp-01:{n}") for n in range(1, 7)}
        assert org.rating_unit(conn, "kp-01:99") is None
        in_ws = conn.execute(
            select(db.evaluations.c.id)
            .where(org.in_units(org.subtree_ids(conn, "370305001")))
            .order_by(db.evaluations.c.id)
        ).scalars()
        assert list(in_ws) == ["kp-01:1", "kp-01:4"]
        assert org.history(conn, "windows", "A01") == [
            {
                "unit_id": "hall-ws",
                "valid_from": org.SINCE_EVER,
                "valid_to": "2026-11-21T00:00:00Z",
            },
            {"unit_id": "hall-xg", "valid_from": "2026-11-21T00:00:00Z", "valid_to": None},
        ]
    assert found["kp-01:1"] == {
        "unit": "hall-ws",
        "window_unit": "hall-ws",
        "staff_unit": "hall-ws",
    }
    assert found["kp-01:2"] == {
        "unit": "hall-xg",
        "window_unit": "hall-xg",
        "staff_unit": "hall-ws",
    }
    assert found["kp-01:3"] == {
        "unit": "hall-xg",
        "window_unit": "hall-xg",
        "staff_unit": "hall-xg",
    }
    assert found["kp-01:4"] == {"unit": "hall-ws", "window_unit": None, "staff_unit": "hall-ws"}
    assert found["kp-01:5"] == {"unit": "370305103", "window_unit": None, "staff_unit": None}
    assert found["kp-01:6"] == {"unit": None, "window_unit": None, "staff_unit": None}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: org.add(c, "units", "x y", "名", "370305", kind="town"), "code: must be 1..64 characters of A-Z a-z 0-9 . _ -"),
        (lambda c: org.add(c, "units", "370305001", "重复", "370305", kind="street"), "code: '370305001' already exists"),
        (lambda c: org.add(c, "units", "new", "新", "370305", kind="city"), "kind: must be one of district, street, town, village, community, department, hall, service_point"),
        (lambda c: org.add(c, "windows", "B01", "窗", "nowhere"), "unit: unknown unit 'nowhere'"),
        (lambda c: org.add(c, "windows", "B01", "  ", "370305"), "name: must not be empty"),
        (lambda c: org.add(c, "staff", "2001", "李四", None), "unit: must not be empty"),
        (lambda c: org.move(c, "units", "370305", "370305001"), "parent: a unit cannot be put under itself"),
        (lambda c: org.move(c, "units", "370305001", "370305"), "parent: already there"),
        (lambda c: org.move(c, "windows", "Z9", "370305"), "code: unknown 'Z9'"),
        (lambda c: org.retire(c, "units", "370305"), "code: '370305' still has 12 things in it"),
    ],
)  # fmt: skip
def test_changes_that_cannot_be_made_say_why(seeded, change, message):
    with seeded.begin() as conn, pytest.raises(org.OrgError) as caught:
        change(conn)
    assert str(caught.value) == message


def test_a_retired_unit_takes_nothing_new_and_keeps_its_past(seeded):
    with seeded.begin() as conn:
        org.add(conn, "units", "v1", "村一", "370305100", kind="village")
        org.retire(conn, "units", "v1", at="2026-11-25T00:00:00Z")
    with seeded.begin() as conn, pytest.raises(org.OrgError) as caught:
        org.add(conn, "windows", "W1", "窗", "v1")
    assert str(caught.value) == "unit: unit 'v1' is retired"
    with seeded.connect() as conn:
        assert "v1" not in {u["id"] for u in org.units(conn)}
        assert org.history(conn, "units", "v1")[0]["valid_to"] == "2026-11-25T00:00:00Z"


# --- files ------------------------------------------------------------------------


def _csv(text: str) -> bytes:
    return text.encode("utf-8")


def _import(engine, what, data, filename="units.csv"):
    with engine.begin() as conn:
        return org.import_rows(conn, what, org.read_file(data, filename))


def _count(engine, table):
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def test_an_import_adds_renames_and_moves_in_any_order(seeded):
    data = _csv(
        "code,name,kind,parent\n"
        "370305001201,某社区居委会,community,370305001\n"
        "hall-1,区政务服务中心,hall,370305\n"
        "370305002,雪宫街道办事处,street,370305\n"  # renamed
        "370305001,闻韶街道,street,370305\n"  # unchanged
        "dept-x,区行政审批服务局,department,370305\n"
    )
    # a child before its parent
    data2 = _csv("code,name,kind,parent\nc2,二级,hall,c1\nc1,一级,service_point,370305100\n")
    assert _import(seeded, "units", data) == {"added": 3, "changed": 1, "moved": 0, "unchanged": 1}
    assert _import(seeded, "units", data2) == {"added": 2, "changed": 0, "moved": 0, "unchanged": 0}
    windows = _csv("code,name,unit\nA01,一号窗,hall-1\nA02,二号窗,hall-1\n")
    assert _import(seeded, "windows", windows, "w.csv")["added"] == 2
    moved = _csv("code,name,unit\nA02,二号窗,c1\n")
    assert _import(seeded, "windows", moved, "w.csv")["moved"] == 1
    with seeded.connect() as conn:
        assert org.get(conn, "windows", "A02")["unit"] == "c1"
        assert org.get(conn, "units", "370305002")["name"] == "雪宫街道办事处"
        assert len(org.history(conn, "windows", "A02")) == 2


BAD_FILES = [
    ("units", "code,name,kind\nx,y,town\n", "row 1, column parent: missing column"),
    ("units", "code,name,kind,parent,colour\n", "row 1, column colour: unknown column"),
    ("units", "code,name,kind,parent\nok1,好,town,370305\n,无码,town,370305\n", "row 3, column code: must not be empty"),
    ("units", "code,name,kind,parent\nok1,好,city,370305\n", "row 2, column kind: must be one of district, street, town, village, community, department, hall, service_point"),
    ("units", "code,name,kind,parent\nok1,好,town,370399\n", "row 2, column parent: unknown unit '370399'"),
    ("units", "code,name,kind,parent\nok1,好,town,370305\nok1,又,town,370305\n", "row 3, column code: 'ok1' already in row 2"),
    ("units", "code,name,kind,parent\n370305,临淄区,district,370305001\n", "row 2, column parent: a unit cannot be put under itself"),
    ("units", "code,name,kind,parent\nok 1,好,town,370305\n", "row 2, column code: must be 1..64 characters of A-Z a-z 0-9 . _ -"),
    ("windows", "code,name,unit\nA01,,370305\n", "row 2, column name: must not be empty"),
    ("staff", "code,name,unit\n1001,张三,\n", "row 2, column unit: must not be empty"),
    ("items", "code,name,unit\n", None),
]  # fmt: skip


@pytest.mark.parametrize(("what", "text", "message"), BAD_FILES)
def test_a_malformed_file_is_refused_whole_naming_row_and_column(seeded, what, text, message):
    before = {t.name: _count(seeded, t) for t in (db.org_units, db.placements, db.windows)}
    if message is None:  # a header alone is an empty import, not an error
        assert _import(seeded, what, _csv(text), "f.csv") == {
            "added": 0, "changed": 0, "moved": 0, "unchanged": 0
        }  # fmt: skip
        return
    with pytest.raises(org.FileProblem) as caught:
        _import(seeded, what, _csv(text), "f.csv")
    assert str(caught.value) == message
    assert {t.name: _count(seeded, t) for t in (db.org_units, db.placements, db.windows)} == before


def test_a_good_row_before_a_bad_one_is_not_kept(seeded):
    data = _csv("code,name,kind,parent\ngood,好,town,370305\nbad,坏,town,nowhere\n")
    with pytest.raises(org.FileProblem):
        _import(seeded, "units", data)
    with seeded.connect() as conn:
        assert org.get(conn, "units", "good") is None


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (b"\xff\xfe\x00x", "u.csv", "file: a CSV file must be UTF-8 text"),
        (b"not a zip", "u.xlsx", "file: not an Excel (.xlsx) workbook"),
        (b"code", "u.txt", "file: must be a .csv or .xlsx file"),
    ],
)
def test_unreadable_files_say_so(data, filename, message):
    with pytest.raises(org.OrgError) as caught:
        org.read_file(data, filename)
    assert str(caught.value) == message


def test_excel_export_reads_back_and_imports_as_a_no_op(seeded):
    with seeded.begin() as conn:
        _build(conn)
        org.add(conn, "windows", "A09", '=HYPERLINK("x")', "hall-ws")
    with seeded.connect() as conn:
        rows = org.export_rows(conn, "windows")
    book = openpyxl.load_workbook(io.BytesIO(org.to_xlsx(rows, "windows")))
    read = [[c or "" for c in row] for row in book.active.iter_rows(values_only=True)]
    assert read == [["code", "name", "unit"], ["A01", "综合受理一号窗", "hall-ws"], ["A09", '=HYPERLINK("x")', "hall-ws"]]  # fmt: skip
    assert book.active["B3"].data_type == "s"  # text, not a formula
    counts = _import(seeded, "windows", org.to_xlsx(rows, "windows"), "w.xlsx")
    assert counts == {"added": 0, "changed": 0, "moved": 0, "unchanged": 2}
    csv_bytes = org.to_csv(rows)
    assert csv_bytes.startswith(b"\xef\xbb\xbfcode,name,unit\r\n")
    assert _import(seeded, "windows", csv_bytes, "w.csv")["unchanged"] == 2


def test_an_excel_file_with_a_bad_cell_names_it(seeded):
    book = openpyxl.Workbook()
    book.active.append(["code", "name", "unit"])
    book.active.append(["1001", "张三", "370305"])
    book.active.append([1002, "李四", "370305999"])
    out = io.BytesIO()
    book.save(out)
    with pytest.raises(org.FileProblem) as caught:
        _import(seeded, "staff", out.getvalue(), "staff.xlsx")
    assert str(caught.value) == "row 3, column unit: unknown unit '370305999'"
    assert _count(seeded, db.staff) == 0
