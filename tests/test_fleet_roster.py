# ruff: noqa: F811 (the fleet_broker fixture is imported from test_revocation)
"""The keypad's roster follows the staff table (issue 11).

A keypad's desired config carries the staff of its window's unit. When a unit
manager or the admin adds, renames, moves or retires a staff member (or moves
a window, or imports a staff file), every keypad whose config holds that
unit's roster gets a new desired version in the same transaction, set by the
person who changed the staff and audited; the fleet page shows drift until
the keypad applies it. A unit too big for a keypad leaves the keypad's config
as it was, and the org and fleet pages say so, naming the unit."""

import json
import threading

import pytest
from sqlalchemy import select

from simulators.keypad import SimKeypad
from sync_server import db, fleet, org
from sync_server.auth import create_user
from tests.harness.collector import AuthActions
from tests.test_revocation import fleet_broker, wait_for  # noqa: F401 (fixture)

MANAGER = ("wang", "long-pass-1")


def hall(conn):
    """Two halls of one street, a window and staff in each, a keypad at each window."""
    org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
    org.add(conn, "units", "hall-ws2", "闻韶街道第二服务点", "370305001", kind="service_point")
    org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")
    org.add(conn, "windows", "B01", "二号点一号窗", "hall-ws2")
    org.add(conn, "staff", "2001", "李强", "hall-ws")
    org.add(conn, "staff", "2002", "王芳", "hall-ws")
    org.add(conn, "staff", "3001", "赵六", "hall-ws2")


def hall_with_keypads(engine):
    """Linzi seeded, the halls and staff of hall(), kp-01 and kp-02 configured."""
    org.seed(engine)
    with engine.begin() as conn:
        hall(conn)
    keypads_configured(engine)


def keypads_configured(engine):
    for device_id in ("kp-01", "kp-02"):
        db.add_device(engine, device_id, "11" * 32)
    with engine.begin() as conn:
        for device_id, window in (("kp-01", "A01"), ("kp-02", "B01")):
            body = fleet.build_body(conn, window_id=window, hours=[[1, 5, "08:30", "12:00"]])
            assert fleet.set_config(conn, device_id, body, "admin") == 1


def desired(engine, device_id):
    with engine.connect() as conn:
        return fleet.desired(conn, device_id)


def audit_rows(engine, *actions):
    a = db.audit_log.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(a.action, a.actor, a.target, a.after).where(a.action.in_(actions)).order_by(a.id)
        ).all()
    return [(r.action, r.actor, r.target, json.loads(r.after) if r.after else None) for r in rows]


def post(client, path, **data):
    token = AuthActions(client).csrf_token("/org")
    return client.post(path, data={"csrf_token": token, **data})


def manager_client(app, engine):
    create_user(engine, *MANAGER, "unit_manager", "370305001")
    client = app.test_client()
    assert AuthActions(client).login(*MANAGER).status_code == 302
    return client


def test_a_unit_manager_moves_a_staff_member_and_both_keypads_get_the_new_roster(engine_app):
    engine = engine_app.extensions["hcp_engine"]
    hall_with_keypads(engine)
    client = manager_client(engine_app, engine)

    moved = post(client, "/org/move", what="staff", code="2002", unit="hall-ws2")
    assert moved.status_code == 302 and "keypads_held" not in moved.headers["Location"]
    one, two = desired(engine, "kp-01"), desired(engine, "kp-02")
    assert (one["version"], one["updated_by"]) == (2, "wang")
    assert one["body"]["roster"] == [["2001", "李强"]]
    assert (two["version"], two["updated_by"]) == (2, "wang")
    assert two["body"]["roster"] == [["2002", "王芳"], ["3001", "赵六"]]
    # the rest of the config is what the admin chose
    assert (
        two["body"]["hours"] == [[1, 5, "08:30", "12:00"]] and two["body"]["org_id"] == "hall-ws2"
    )
    # audited like any config change, by the one who moved, with the move
    rows = audit_rows(engine, "org.staff.move", "fleet.config")
    assert rows[:2] == [
        ("fleet.config", "wang", "device:kp-01",
         {"version": 2, **one["body"], "cause": "org.staff.move:2002"}),
        ("fleet.config", "wang", "device:kp-02",
         {"version": 2, **two["body"], "cause": "org.staff.move:2002"}),
    ]  # fmt: skip
    assert rows[2][:3] == ("org.staff.move", "wang", "staff:2002")
    # the fleet page shows drift until the keypads apply version 2
    admin = engine_app.test_client()
    AuthActions(admin).login("admin")
    listing = admin.get("/fleet").get_data(as_text=True)
    assert listing.count("偏差始于") == 2

    # a rename changes the name on the roster; a change elsewhere changes nothing here
    assert post(client, "/org/rename", what="staff", code="2001", name="李强强").status_code == 302
    assert desired(engine, "kp-01")["body"]["roster"] == [["2001", "李强强"]]
    assert desired(engine, "kp-01")["version"] == 3 and desired(engine, "kp-02")["version"] == 2
    # a new colleague, then one who leaves
    added = post(client, "/org/add", what="staff", code="2003", name="孙丽", unit="hall-ws")
    assert added.status_code == 302
    assert desired(engine, "kp-01")["body"]["roster"] == [["2001", "李强强"], ["2003", "孙丽"]]
    assert post(client, "/org/retire", what="staff", code="2001").status_code == 302
    assert desired(engine, "kp-01")["body"]["roster"] == [["2003", "孙丽"]]
    assert desired(engine, "kp-01")["version"] == 5 and desired(engine, "kp-02")["version"] == 2


def test_a_window_moved_to_another_unit_takes_that_units_roster(engine):
    hall_with_keypads(engine)
    with engine.begin() as conn:
        assert org.move(conn, "windows", "A01", "hall-ws2") == []
    row = desired(engine, "kp-01")
    assert (row["version"], row["updated_by"]) == (2, "system")  # no one logged in: the CLI
    assert row["body"]["org_id"] == "hall-ws2" and row["body"]["roster"] == [["3001", "赵六"]]
    # the last staff member of a unit leaves: the config says so by having no
    # roster, as a config saved now would
    with engine.begin() as conn:
        org.retire(conn, "staff", "3001")
        assert "roster" not in fleet.desired(conn, "kp-01")["body"]
        assert fleet.desired(conn, "kp-01")["body"] == fleet.build_body(
            conn, window_id="A01", hours=[[1, 5, "08:30", "12:00"]]
        )


def test_a_staff_file_gives_each_keypad_one_new_version(engine_app):
    engine = engine_app.extensions["hcp_engine"]
    hall_with_keypads(engine)
    client = engine_app.test_client()
    AuthActions(client).login("admin")
    data = "code,name,unit\n2001,李强,hall-ws2\n2002,王芳芳,hall-ws\n2004,周杰,hall-ws\n"
    token = AuthActions(client).csrf_token("/org")
    imported = client.post(
        "/org/import",
        data={"csrf_token": token, "what": "staff", "file": (_file(data), "staff.csv")},
    )
    assert imported.status_code == 302
    assert desired(engine, "kp-01")["version"] == 2 and desired(engine, "kp-02")["version"] == 2
    assert desired(engine, "kp-01")["body"]["roster"] == [["2002", "王芳芳"], ["2004", "周杰"]]
    assert desired(engine, "kp-02")["body"]["roster"] == [["2001", "李强"], ["3001", "赵六"]]
    causes = [after["cause"] for _a, _w, _t, after in audit_rows(engine, "fleet.config")]
    assert causes == ["org.staff.import", "org.staff.import"]


def _file(text):
    import io

    return io.BytesIO(text.encode())


def test_a_unit_too_big_for_a_keypad_keeps_its_roster_and_the_pages_say_why(engine_app):
    engine = engine_app.extensions["hcp_engine"]
    org.seed(engine)
    with engine.begin() as conn:
        hall(conn)
        for n in range(fleet.MAX_ROSTER - 2):  # 64 in hall-ws: the most a keypad holds
            org.add(conn, "staff", f"9{n:03d}", "员工", "hall-ws")
    keypads_configured(engine)
    assert len(desired(engine, "kp-01")["body"]["roster"]) == 64
    client = engine_app.test_client()
    AuthActions(client).login("admin")

    added = post(client, "/org/add", what="staff", code="2003", name="孙丽", unit="hall-ws")
    # the staff change stands: the org is the record of who works where
    assert added.status_code == 302 and added.headers["Location"].endswith(
        "/org/units/hall-ws?keypads_held=1"
    )
    with engine.connect() as conn:
        assert org.placed_in(conn, "staff", "2003") == "hall-ws"
    page = client.get(added.headers["Location"]).get_data(as_text=True)
    assert (
        "1 台评价器仍使用原工作人员名单：所在单位的工作人员超出评价器容量。设备管理页面列出了相关单位。"
        in page
    )
    # the keypad keeps the config it has, which is no drift of its own making
    row = desired(engine, "kp-01")
    assert row["version"] == 1 and len(row["body"]["roster"]) == 64
    assert audit_rows(engine, "fleet.config.held") == [
        ("fleet.config.held", "admin", "device:kp-01",
         {"problem": {"unit": "hall-ws", "staff": 65}, "cause": "org.staff.add:2003"}),
    ]  # fmt: skip
    text = "单位 hall-ws 的工作人员名单未下发：该单位有 65 名工作人员，评价器最多容纳 64 名"
    listing = client.get("/fleet").get_data(as_text=True)
    assert "名单未更新： " + text in listing
    detail = client.get("/fleet/kp-01").get_data(as_text=True)
    assert "名单未更新： " + text + "<br>在该单位人数减少或配置被修改之前" in detail
    assert text not in client.get("/fleet/kp-02").get_data(as_text=True)
    with engine.connect() as conn:
        assert fleet.held_rosters(conn) == {"kp-01": {"unit": "hall-ws", "staff": 65}}
        assert fleet.problem_text({"unit": "hall-ws", "bytes": 3900}) == (
            "the roster of unit hall-ws was not sent: the configuration would be 3900 bytes; "
            "a keypad takes at most 3800"
        )  # outside a request: the English message
    # one leaves: the unit fits again, the roster follows, the problem is gone
    assert post(client, "/org/retire", what="staff", code="9000").status_code == 302
    row = desired(engine, "kp-01")
    assert row["version"] == 2 and ["2003", "孙丽"] in row["body"]["roster"]
    assert ["9000", "员工"] not in row["body"]["roster"]
    assert text not in client.get("/fleet").get_data(as_text=True)


def test_a_roster_too_many_bytes_for_a_keypad_is_held_with_its_size(engine):
    hall_with_keypads(engine)
    with engine.begin() as conn:
        for n in range(20):  # long names: few staff, but too many bytes
            org.add(conn, "staff", f"8{n:03d}", "长" * 60, "hall-ws")
        held = fleet.follow_org(conn, units={"hall-ws"}, cause="test")
        size = fleet.config_size(fleet.derive(fleet.desired(conn, "kp-01")["body"],
                                              fleet.org_now(conn))[0])  # fmt: skip
    assert size > fleet.MAX_CONFIG_BYTES
    assert held == [
        {"device_id": "kp-01", "unit": "hall-ws", "problem": {"unit": "hall-ws", "bytes": size}}
    ]
    row = desired(engine, "kp-01")
    # the names that fitted went out before the first that did not
    assert row["body"]["roster"][:2] == [["2001", "李强"], ["2002", "王芳"]]
    assert all(len(name) == 60 for _no, name in row["body"]["roster"][2:])


def test_the_running_keypad_applies_the_roster_after_a_staff_move(fleet_broker):
    fb = fleet_broker
    org.seed(fb.engine)
    with fb.engine.begin() as conn:
        hall(conn)
        body = fleet.build_body(conn, window_id="A01")
        assert fleet.set_config(conn, "kp-01", body, "admin") == 1
    kp = SimKeypad("kp-01", fb.keys["kp-01"], fb.broker.host, fb.broker.port,
                   str(fb.tmp / "kp-01"), status_every_ms=500).start()  # fmt: skip
    try:
        assert wait_for(lambda: kp.call(lambda d: d.config_version) == 1, 15)
        assert kp.call(lambda d: d.app.service.name("2002")) == "王芳"
        with fb.engine.begin() as conn:
            org.move(conn, "staff", "2002", "hall-ws2")
            org.add(conn, "staff", "2005", "钱七", "hall-ws")

        def item():
            with fb.engine.connect() as conn:
                return {i["device_id"]: i for i in fleet.overview(conn)}["kp-01"]

        assert item()["desired"] == 3
        assert wait_for(lambda: item()["applied"] == 3 and not item()["drift"], 15), item()
        # the keypad now refuses 2002's sign-in and takes 2005's
        assert kp.call(lambda d: d.app.service.name("2002")) is None
        assert kp.call(lambda d: d.app.service.name("2005")) == "钱七"
        assert kp.call(lambda d: d.sync.bad_messages) == 0
    finally:
        kp.stop()


def test_a_renamed_staff_member_on_duty_is_shown_by_the_new_name(engine):
    hall_with_keypads(engine)
    with engine.begin() as conn:
        # kp-02's window is in hall-ws2, its staff on duty from hall-ws
        body = fleet.build_body(conn, window_id="B01", staff_id="2001")
        assert fleet.set_config(conn, "kp-02", body, "admin") == 2
        org.rename(conn, "staff", "2001", "李强强")
    row = desired(engine, "kp-02")
    assert row["version"] == 3
    assert (row["body"]["staff_id"], row["body"]["staff_no"], row["body"]["staff_name"]) == (
        "2001", "2001", "李强强"
    )  # fmt: skip
    assert desired(engine, "kp-01")["body"]["roster"][0] == ["2001", "李强强"]


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_two_staff_changes_at_once_both_reach_the_roster(engine):
    """Two managers add a colleague to one hall at the same moment: the second
    change waits for the first's keypad configs, then derives them from the
    staff table with both, instead of overwriting the first's version."""
    hall_with_keypads(engine)
    done = []

    def second():
        with engine.begin() as conn:
            org.add(conn, "staff", "2011", "乙", "hall-ws")
        done.append(True)

    _waits_for_a_staff_change(engine, second)  # kp-01's config locked until its commit
    assert done == [True]
    row = desired(engine, "kp-01")
    assert row["version"] == 3
    assert row["body"]["roster"] == [
        ["2001", "李强"], ["2002", "王芳"], ["2010", "甲"], ["2011", "乙"]
    ]  # fmt: skip


def _waits_for_a_staff_change(engine, action):
    """`action` runs in a thread while another session has added staff member
    2010 to hall-ws and not committed yet: it must wait on that session's
    lock (seen in pg_stat_activity), and runs to its end after the commit."""
    first = engine.connect()
    first_tx = first.begin()
    org.add(first, "staff", "2010", "甲", "hall-ws")
    thread = threading.Thread(target=action)
    thread.start()
    try:
        assert _waiting_on_a_lock(engine)
        first_tx.commit()
    finally:
        first.close()
        thread.join(30)


def _waiting_on_a_lock(engine, count=1):
    def waiting():
        # a transaction of its own each time: PostgreSQL reads pg_stat_activity
        # once per transaction, so one kept open saw a wait begun later never
        with engine.connect() as watch:
            return (
                watch.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                ).scalar()
                == count
            )

    return wait_for(waiting, 30)


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_config_saved_while_staff_change_gets_the_next_version(engine_app):
    """The admin saves kp-01's config while a manager adds a colleague to its
    hall: the save waits, then takes the roster with the colleague and the
    version after the manager's, never the same version with another body."""
    engine = engine_app.extensions["hcp_engine"]
    hall_with_keypads(engine)
    client = engine_app.test_client()
    AuthActions(client).login("admin")
    token = AuthActions(client).csrf_token("/fleet/kp-01")
    answers = []

    def save():
        form = {"csrf_token": token, "window_id": "A01", "hours": "1-5 08:30-17:00"}
        answers.append(client.post("/fleet/kp-01/config", data=form).status_code)

    _waits_for_a_staff_change(engine, save)  # version 2, not committed while it waits
    assert answers == [302]
    row = desired(engine, "kp-01")
    assert (row["version"], row["updated_by"]) == (3, "admin")
    assert row["body"]["hours"] == [[1, 5, "08:30", "17:00"]]
    assert row["body"]["roster"] == [["2001", "李强"], ["2002", "王芳"], ["2010", "甲"]]


def test_a_staff_file_that_overfills_a_hall_is_taken_and_says_which_keypads_kept_the_roster(
    engine_app,
):
    engine = engine_app.extensions["hcp_engine"]
    hall_with_keypads(engine)
    client = engine_app.test_client()
    AuthActions(client).login("admin")
    rows = "".join(f"7{n:03d},员工,hall-ws\n" for n in range(fleet.MAX_ROSTER))
    token = AuthActions(client).csrf_token("/org")
    imported = client.post(
        "/org/import",
        data={"csrf_token": token, "what": "staff", "file": (_file("code,name,unit\n" + rows),
                                                              "staff.csv")},
    )  # fmt: skip
    assert imported.status_code == 302 and "keypads_held=1" in imported.headers["Location"]
    tree = client.get(imported.headers["Location"]).get_data(as_text=True)
    assert "已导入：新增 64，改名 0，调动 0，未变 0。" in tree
    assert '<p class="error" role="alert" id="keypads-held">1 台评价器仍使用原工作人员名单' in tree
    with engine.connect() as conn:
        assert len(org.members(conn, "staff", {"hall-ws"})) == 66  # the file is stored whole
    assert desired(engine, "kp-01")["version"] == 1  # kept as it was
    assert desired(engine, "kp-02")["version"] == 1  # another hall: untouched
    ((_a, actor, target, after),) = audit_rows(engine, "fleet.config.held")
    assert (actor, target, after) == (
        "admin", "device:kp-01",
        {"problem": {"unit": "hall-ws", "staff": 66}, "cause": "org.staff.import"},
    )  # fmt: skip
