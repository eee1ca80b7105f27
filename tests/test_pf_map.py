"""The channel -> provincial pf table: defaults, the inverse, what an admin may change."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from protocols import levels
from protocols.levels import CHANNEL_TO_PF, PF_CODES, PF_NAMES, MappingError
from sync_server import db, pf_map
from sync_server.pf_pages import FORM_CELLS, PF_LABELS
from tests.harness import shared_worlds
from tests.harness.collector import AuthActions

# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres


@pytest.fixture
def app(engine_app):
    """These tests run the app on each kind of database."""
    return engine_app


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_app(request, tmp_path_factory):
    """One app per database for the cases that only read or whose change is
    refused (each checks the table is still the default afterwards)."""
    with shared_worlds.module_world(request, tmp_path_factory, lambda app: None) as app:
        yield app


@pytest.fixture
def shared(shared_app):
    """(a new test client, the engine) of the shared app."""
    return shared_app.test_client(), shared_app.extensions["hcp_engine"]


# --- the table and its inverse -----------------------------------------------------------


def test_the_table_in_force_starts_as_the_default(engine):
    assert pf_map.read(engine) == tuple(pf_map.Row(*row) for row in CHANNEL_TO_PF)


def test_paper_is_unmapped_by_default(engine):
    table = pf_map.read(engine)
    with pytest.raises(MappingError) as raised:
        pf_map.to_pf(table, "paper")
    assert str(raised.value) == "channel: no pf code configured for 'paper'"
    assert ("paper", "") not in [pf_map.from_pf(table, pf) for pf in PF_CODES]


@pytest.mark.parametrize(
    ("channel", "client", "pf"),
    [
        ("keypad", "", 4),
        ("kiosk", "", 5),
        ("qr_window", "", 3),
        ("qr_window", "mobile", 3),  # no row for the client: the any-client row
        ("qr_case", "pc", 3),
        ("web", "pc", 1),
        ("web", "mobile", 2),
        ("sms", "", 7),
        ("hotline", "", 6),
    ],
)
def test_default_codes(engine, channel, client, pf):
    assert pf_map.to_pf(pf_map.read(engine), channel, client) == pf


def test_a_web_rating_without_its_client_has_no_code(engine):
    with pytest.raises(MappingError) as raised:
        pf_map.to_pf(pf_map.read(engine), "web")
    assert str(raised.value) == "channel: no pf code configured for 'web'"
    with pytest.raises(MappingError) as raised:
        pf_map.to_pf(pf_map.read(engine), "fax", "pc")
    assert str(raised.value) == "channel: no pf code configured for 'fax' / pc"


def test_the_default_inverse_is_protocols_levels_own(engine):
    table = pf_map.read(engine)
    assert [pf_map.from_pf(table, pf) for pf in PF_CODES] == [
        levels.pf_to_channel(pf) for pf in PF_CODES
    ]
    assert pf_map.from_pf(table, 3) == ("qr_case", "")  # qr_window shares 3


@pytest.mark.parametrize("pf", [0, 8, True, "4", None])
def test_an_unknown_code_from_outside_is_refused(engine, pf):
    with pytest.raises(MappingError) as raised:
        pf_map.from_pf(pf_map.read(engine), pf)
    assert str(raised.value) == f"pf: no mapping for {pf!r}"


def test_a_client_row_without_a_code_falls_back_to_the_any_client_row():
    table = (("web", "", 1), ("web", "mobile", None))
    assert pf_map.to_pf(table, "web", "mobile") == 1
    assert pf_map.from_pf(table, 1) == ("web", "")


def test_where_the_default_choice_is_gone_the_first_channel_in_order_is_taken():
    table = (("qr_window", "", 3), ("sms", "", 3), ("qr_case", "", 7))
    assert pf_map.from_pf(table, 3) == ("qr_window", "")
    assert pf_map.from_pf(table, 7) == ("qr_case", "")


# any table an admin could save: each cell of the form left out, unconfigured or
# given a code (never a hall-terminal code for paper)
def _cell_codes(channel):
    codes = [pf for pf in PF_CODES if channel != "paper" or pf not in pf_map.HALL_TERMINAL_PF]
    return st.sampled_from([None, *codes])


ADMIN_TABLES = st.tuples(
    *[
        st.one_of(st.none(), _cell_codes(channel).map(lambda pf, c=(channel, client): (*c, pf)))
        for channel, client in FORM_CELLS
    ]
).map(lambda rows: [row for row in rows if row is not None])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=ADMIN_TABLES)
def test_round_trips_through_any_table_an_admin_saves(engine, rows):
    saved = pf_map.save(engine, rows, "admin")
    table = pf_map.read(engine)
    assert table == saved and sorted(table) == sorted(pf_map.Row(*row) for row in rows)
    configured = {row.pf for row in table if row.pf is not None}
    for pf in PF_CODES:
        if pf not in configured:
            with pytest.raises(MappingError):
                pf_map.from_pf(table, pf)
            continue
        channel, client = pf_map.from_pf(table, pf)
        assert pf_map.to_pf(table, channel, client) == pf  # pf -> channel -> pf
        default = levels.pf_to_channel(pf)
        if pf_map.Row(*default, pf) in table:
            assert (channel, client) == default
    for row in table:
        if row.pf is not None:  # channel -> pf -> channel -> the same pf
            assert pf_map.to_pf(table, *pf_map.from_pf(table, row.pf)) == row.pf


# --- saving -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("fax", "", 1), "row 2: channel: must be one of " + ", ".join(levels.CHANNELS)),
        ((None, "", 1), "row 2: channel: must be one of " + ", ".join(levels.CHANNELS)),
        (("web", "tv", 1), "row 2: client: must be empty or one of pc, mobile"),
        (("web", None, 1), "row 2: client: must be empty or one of pc, mobile"),
        (("sms", "pc", 7), "row 2: client: only web, qr_window, qr_case ratings carry a client"),
        (("sms", "", 8), "row 2: pf: must be one of 1, 2, 3, 4, 5, 6, 7 or empty"),
        (("sms", "", 0), "row 2: pf: must be one of 1, 2, 3, 4, 5, 6, 7 or empty"),
        (("sms", "", "7"), "row 2: pf: must be one of 1, 2, 3, 4, 5, 6, 7 or empty"),
        (("sms", "", True), "row 2: pf: must be one of 1, 2, 3, 4, 5, 6, 7 or empty"),
        (("sms", "", 7.0), "row 2: pf: must be one of 1, 2, 3, 4, 5, 6, 7 or empty"),
        (
            ("paper", "", 4),
            "row 2: pf: a paper card must not be reported as a hall terminal rating (4, 5)",
        ),
        (
            ("paper", "", 5),
            "row 2: pf: a paper card must not be reported as a hall terminal rating (4, 5)",
        ),
        (("keypad", "", 5), "row 2: keypad / * is given twice"),
        (("keypad", "", 5, "x"), "row 2: must have a channel, a client and a pf"),
        (None, "row 2: must have a channel, a client and a pf"),
    ],
)
def test_every_row_is_checked_with_an_exact_message(engine, row, message):
    with pytest.raises(pf_map.PfMapError) as raised:
        pf_map.save(engine, [("keypad", "", 4), row], "admin")
    assert str(raised.value) == message
    assert pf_map.read(engine) == tuple(pf_map.Row(*r) for r in CHANNEL_TO_PF)  # unchanged


def test_a_save_records_who_and_when(engine):
    pf_map.save(engine, [("paper", "", 1), ("web", "pc", 1)], "li-admin")
    with engine.connect() as conn:
        rows = conn.execute(select(db.pf_map).order_by(db.pf_map.c.channel)).all()
    assert [(r.channel, r.client, r.pf, r.updated_by) for r in rows] == [
        ("paper", "", 1, "li-admin"),
        ("web", "pc", 1, "li-admin"),
    ]
    assert rows[0].updated_at == rows[1].updated_at and rows[0].updated_at.endswith("Z")


def test_pf_labels_translate_to_the_provincial_names(shared_app):
    with shared_app.test_request_context("/"):
        assert {pf: str(label) for pf, label in PF_LABELS.items()} == dict(PF_NAMES)


# --- the API ------------------------------------------------------------------------------


NEW_TABLE = [
    {"channel": "keypad", "client": "", "pf": 5},
    {"channel": "paper", "client": "", "pf": 1},
]


def test_anyone_logged_in_reads_the_table_and_its_inverse(shared):
    client, _engine = shared
    assert client.get("/api/v1/pf-map").status_code == 401
    AuthActions(client).login("viewer")
    body = client.get("/api/v1/pf-map").get_json()
    assert [(i["channel"], i["client"], i["pf"]) for i in body["items"]] == list(CHANNEL_TO_PF)
    assert body["items"][0] == {
        "channel": "keypad",
        "client": "",
        "pf": 4,
        "updated_by": None,
        "updated_at": None,
    }
    assert body["inverse"] == [
        {"pf": pf, "channel": channel, "client": client}
        for pf, channel, client in levels.PF_TO_CHANNEL
    ]


@pytest.mark.parametrize(("role", "status", "error"), [(None, 401, "login required"), ("viewer", 403, "admin only")])  # fmt: skip
def test_only_an_admin_changes_the_table(shared, role, status, error):
    client, engine = shared
    if role:
        AuthActions(client).login(role)
    response = client.put("/api/v1/pf-map", json={"rows": NEW_TABLE})
    assert (response.status_code, response.get_json()) == (status, {"error": error})
    assert pf_map.read(engine) == tuple(pf_map.Row(*row) for row in CHANNEL_TO_PF)


def test_an_admin_replaces_the_table(admin, engine):
    response = admin.put("/api/v1/pf-map", json={"rows": NEW_TABLE})
    assert response.status_code == 200
    body = response.get_json()
    assert [(i["channel"], i["client"], i["pf"], i["updated_by"]) for i in body["items"]] == [
        ("keypad", "", 5, "admin"),
        ("paper", "", 1, "admin"),
    ]
    assert {i["pf"]: (i["channel"], i["client"]) for i in body["inverse"]} == {
        1: ("paper", ""),
        2: (None, None),
        3: (None, None),
        4: (None, None),
        5: ("keypad", ""),
        6: (None, None),
        7: (None, None),
    }
    assert pf_map.to_pf(pf_map.read(engine), "paper") == 1


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        (
            {"json": {"rows": [{"channel": "paper", "client": "", "pf": 4}]}},
            400,
            "row 1: pf: a paper card must not be reported as a hall terminal rating (4, 5)",
        ),
        (
            {"json": {"rows": [{"channel": "sms", "pf": 7}]}},
            400,
            "row 1: must have a channel, a client and a pf",
        ),
        ({"json": [NEW_TABLE]}, 400, 'body: must be {"rows": [{"channel", "client", "pf"}, ...]}'),
        ({"json": {"rows": "all"}}, 400, 'body: must be {"rows": [{"channel", "client", "pf"}, ...]}'),
        ({"data": "rows=1"}, 415, "body: must be JSON (Content-Type: application/json)"),
        (
            {"data": "{not json", "content_type": "application/json"},
            400,
            'body: must be {"rows": [{"channel", "client", "pf"}, ...]}',
        ),
    ],
)  # fmt: skip
def test_a_bad_change_is_refused_with_the_exact_message(shared, kwargs, status, error):
    admin, engine = shared
    AuthActions(admin).login("admin")
    response = admin.put("/api/v1/pf-map", **kwargs)
    assert (response.status_code, response.get_json()) == (status, {"error": error})
    assert pf_map.read(engine) == tuple(pf_map.Row(*row) for row in CHANNEL_TO_PF)


# --- the page ----------------------------------------------------------------------------


def _form(auth, **changes):
    data = {"csrf_token": auth.csrf_token("/pf-map")}
    for channel, client in FORM_CELLS:
        data[f"pf-{channel}-{client}"] = ""
    for channel, client, pf in CHANNEL_TO_PF:
        data[f"pf-{channel}-{client}"] = "" if pf is None else str(pf)
    data.update(changes)
    return data


def test_the_page_shows_the_table_in_chinese_and_english(shared):
    client, _engine = shared
    AuthActions(client).login("viewer")
    page = client.get("/pf-map").get_data(as_text=True)
    for label in ("省级渠道代码", "评议卡", "未配置", "4 政务大厅平板电脑", "PC端", "任意客户端"):
        assert label in page, label
    assert 'id="pf-form"' not in page  # a viewer only reads
    english = client.get("/pf-map?lang=en").get_data(as_text=True)
    assert "Provincial channel codes" in english and "4 Hall tablet" in english


def test_a_viewer_cannot_post_the_form(shared):
    client, engine = shared
    auth = AuthActions(client)
    auth.login("viewer")
    response = client.post("/pf-map", data=_form(auth, **{"pf-paper-": "1"}))
    assert response.status_code == 403
    assert "您无权访问此页面。" in response.get_data(as_text=True)
    assert pf_map.to_pf(pf_map.read(engine), "keypad") == 4
    with pytest.raises(MappingError):
        pf_map.to_pf(pf_map.read(engine), "paper")


def test_an_admin_changes_the_table_through_the_form(client, engine):
    auth = AuthActions(client)
    auth.login("admin")
    page = client.get("/pf-map").get_data(as_text=True)
    assert 'id="pf-form"' in page and 'name="pf-web-pc"' in page
    response = client.post("/pf-map", data=_form(auth, **{"pf-paper-": "1", "pf-web-pc": ""}))
    assert (response.status_code, response.headers["Location"]) == (302, "/pf-map?saved=1")
    table = pf_map.read(engine)
    assert pf_map.to_pf(table, "paper") == 1
    with pytest.raises(MappingError):
        pf_map.to_pf(table, "web", "pc")
    assert "已保存。" in client.get("/pf-map?saved=1").get_data(as_text=True)


def test_a_forged_form_is_refused_with_the_exact_message(shared):
    client, engine = shared
    auth = AuthActions(client)
    auth.login("admin")
    response = client.post("/pf-map", data=_form(auth, **{"pf-paper-": "5"}))
    assert response.status_code == 400
    assert (
        "未保存： row 14: pf: a paper card must not be reported as a hall terminal rating (4, 5)"
        in response.get_data(as_text=True)
    )
    response = client.post("/pf-map", data=_form(auth, **{"pf-sms-": "9"}))
    assert "未保存： row 12: pf: must be one of 1, 2, 3, 4, 5, 6, 7 or empty" in (
        response.get_data(as_text=True)
    )
    assert pf_map.read(engine) == tuple(pf_map.Row(*row) for row in CHANNEL_TO_PF)


def test_the_form_needs_its_csrf_token(shared):
    admin, engine = shared
    AuthActions(admin).login("admin")
    response = admin.post("/pf-map", data={"pf-paper-": "1"})
    assert response.status_code == 400
    with pytest.raises(MappingError):
        pf_map.to_pf(pf_map.read(engine), "paper")


# --- the emptied PostgreSQL database of these tests is as the migrations left it ----------


def test_emptying_the_shared_postgresql_database_brings_back_the_migrated_state(
    migrated_postgres,
):
    """tests/harness/shared_worlds.py empties one migrated database between
    tests instead of migrating again: the seeded pf table and every sequence
    must come back as they were, and a changed schema must be caught."""
    eng = db.make_engine(migrated_postgres.url)
    try:
        migrated_postgres.reset(eng)
        with eng.begin() as conn:
            conn.exec_driver_sql("DELETE FROM pf_map")
            sequences = (
                conn.exec_driver_sql(
                    "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
                )
                .scalars()
                .all()
            )
            for name in sequences:
                conn.exec_driver_sql(f"SELECT nextval('\"{name}\"')")
        assert sequences, "the schema has sequences to put back"
        migrated_postgres.reset(eng)
        assert pf_map.read(eng) == tuple(pf_map.Row(*row) for row in CHANNEL_TO_PF)
        with eng.connect() as conn:
            now = conn.exec_driver_sql(
                "SELECT sequencename, COALESCE(last_value, start_value), last_value IS NOT NULL"
                " FROM pg_sequences WHERE schemaname = 'public'"
            ).all()
        assert sorted(now) == sorted(migrated_postgres.sequences)
        migrated_postgres.check(eng)
        with eng.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE stray (id integer)")
        with pytest.raises(AssertionError) as caught:
            migrated_postgres.check(eng)
        assert "a test changed the schema of the shared database" in str(caught.value)
    finally:
        with eng.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS stray")
        migrated_postgres.reset(eng)
        eng.dispose()
