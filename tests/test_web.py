"""The admin pages (Chinese first, English on request), the catalog, and `hcp collector`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from sqlalchemy import select

from hcp.cli import main as hcp_main
from protocols import messages
from protocols.levels import LEVEL_NAMES
from sync_server import CATALOG_DIR, PACKAGE_DIR, compile_catalogs, db, read_catalogs
from sync_server.web import CHANNEL_LABELS, LEVEL_LABELS
from tests.harness.collector import AuthActions
from tests.harness.records import CONTACT, add_evaluation, set_status

PO_PATHS = sorted((CATALOG_DIR / "zh_CN" / "LC_MESSAGES").glob("*.po"))


@pytest.fixture
def engine(app):
    return app.extensions["hcp_engine"]


def login(client, role):
    AuthActions(client).login(role)
    return client


@pytest.fixture
def sample(engine):
    add_evaluation(engine, "kp-01:1", 5, "2026-11-26T00:30:00Z", window_id="A01")
    add_evaluation(
        engine,
        "kp-01:2",
        1,
        "2026-11-26T01:45:00Z",
        window_id="A01",
        contact=CONTACT,
        comment="等了很久",
    )
    add_evaluation(engine, "kp-02:1", 3, "2026-11-26T02:00:00Z", window_id="B03", channel="kiosk")


def text(response):
    return response.get_data(as_text=True)


# --- pages -----------------------------------------------------------------------


def test_dashboard_is_chinese_by_default(client, sample):
    page = text(login(client, "viewer").get("/"))
    for label in (
        "临淄区政务服务好差评",
        "实时汇总",
        "评价总数",
        "好评",
        "差评",
        "好评率",
        "非常满意",
        "满意",
        "基本满意",
        "不满意",
        "非常不满意",
        "最新评价",
        "窗口评价器",
        "大厅自助机",
    ):
        assert label in page, label
    assert '<html lang="zh-CN">' in page
    assert 'id="total">3<' in page
    assert 'id="good-rate">66.7%<' in page
    # UTC 01:45 is 09:45 in Linzi
    assert "2026-11-26 09:45:00" in page
    assert "Dashboard" not in page


def test_dashboard_never_shows_the_contact(client, sample):
    for path in ("/", "/evaluations", "/evaluations?bad=1"):
        assert CONTACT not in text(login(client, "admin").get(path)), path


def test_english_on_request_and_remembered(client, sample):
    login(client, "viewer")
    page = text(client.get("/?lang=en"))
    for label in (
        "Linzi District Government Service Ratings",
        "Total ratings",
        "Good rating rate",
        "Very dissatisfied",
        "Window keypad",
    ):
        assert label in page, label
    assert "临淄区政务服务好差评" not in page
    assert "Good rating rate" in text(client.get("/evaluations"))
    assert "尚未登记设备。" in text(client.get("/devices?lang=zh_CN"))
    assert "好评率" in text(client.get("/"))


def test_an_unknown_language_keeps_chinese(client):
    assert "登录" in text(client.get("/login?lang=fr"))


def test_language_links_keep_the_filters(client, sample):
    page = text(login(client, "viewer").get("/evaluations?window_id=A01&stars=1"))
    assert 'href="/evaluations?window_id=A01&amp;stars=1&amp;lang=en"' in page


def test_evaluations_page_filters_and_pages(client, sample):
    login(client, "viewer")
    page = text(client.get("/evaluations?window_id=A01&per_page=1"))
    assert "共 2 条评价" in page
    assert "第 1 页，共 2 页" in page
    assert 'href="/evaluations?window_id=A01&amp;per_page=1&amp;page=2"' in page
    assert "非常不满意" in page and "等了很久" in page
    second = text(client.get("/evaluations?window_id=A01&per_page=1&page=2"))
    assert "第 2 页，共 2 页" in second and "上一页" in second and "下一页" not in second


def test_evaluations_page_shows_a_bad_filter(client):
    response = login(client, "viewer").get("/evaluations?stars=7")
    assert response.status_code == 400
    assert "筛选条件有误： stars: must be integers 1..5" in text(response)


def test_devices_page_shows_the_gap(client, engine):
    db.add_device(engine, "kp-01", "ee" * 32, window_id="A01")
    add_evaluation(engine, "kp-01:1", 5, "2026-11-26T00:30:00Z")
    add_evaluation(engine, "kp-01:3", 5, "2026-11-26T00:31:00Z")
    page = text(login(client, "viewer").get("/devices"))
    assert "缺失序号数" in page and "尚未上报" in page
    assert '<td class="bad">1</td>' in page
    assert "ee" * 32 not in page


def test_seqs_lost_with_a_board_are_shown_with_their_cause_not_as_missing(client, engine):
    from sync_server.schema_fleet import fleet_seq_gaps

    db.add_device(engine, "kp-01", "ee" * 32, window_id="A01")
    for seq in (1, 2, 7, 9):  # 3..6 lost with the old board (noted at re-provisioning); 8 not
        add_evaluation(engine, f"kp-01:{seq}", 5, f"2026-11-26T00:3{seq}:00Z")
    with engine.begin() as conn:
        conn.execute(
            fleet_seq_gaps.insert().values(device_id="kp-01", first_seq=3, last_seq=6,
                                           cause="lost_with_board", noted_at=db.utc_now(),
                                           noted_by="tech")
        )  # fmt: skip
    page = text(login(client, "viewer").get("/devices"))
    assert '<td class="bad">1' in page  # only seq 8 is missing for no known reason
    assert '<span class="muted" id="lost-kp-01">另有4条随清空或更换的主板丢失</span>' in page
    api = client.get("/api/v1/devices").get_json()["items"][0]
    assert (api["missing"], api["lost_with_board"]) == (1, 4)


def test_devices_page_shows_per_level_counts_to_admins_only(client, engine):
    db.add_device(engine, "kp-01", "ee" * 32)
    add_evaluation(engine, "kp-01:1", 5, "2026-11-26T00:30:00Z")
    add_evaluation(engine, "kp-01:2", 1, "2026-11-26T00:31:00Z")
    counts = {"1": 0, "2": 0, "3": 0, "4": 0, "5": 2}
    set_status(engine, "kp-01", messages.status(True, last_seq=2, counts=counts))
    stored = '{"1": 1, "2": 0, "3": 0, "4": 0, "5": 1}'

    viewer_page = text(login(client, "viewer").get("/devices"))
    assert '<span class="bad">不一致</span>' in viewer_page
    assert "设备上报 {" not in viewer_page and "已入库 {" not in viewer_page
    assert '"5": 2' not in viewer_page and '"5": 1' not in viewer_page

    AuthActions(client).logout()
    admin_page = text(login(client, "admin").get("/devices"))
    assert '<span class="bad">不一致</span>' in admin_page
    reported = '{"1": 0, "2": 0, "3": 0, "4": 0, "5": 2}'
    assert f"设备上报 {reported} / 已入库 {stored}</span>" in admin_page


def test_quarantine_page_is_for_admins(client, engine):
    with engine.begin() as conn:
        conn.execute(
            db.quarantine.insert().values(
                received_at=db.utc_now(),
                topic="hcp/v1/dev/kp-01/up/ev",
                device_id="kp-01",
                record_id="kp-01:9",
                reason="sig: is required",
                payload='{"id": "kp-01:9", "contact": "13800000000"}',
            )
        )
    login(client, "viewer")
    assert "隔离区" not in text(client.get("/"))
    refused = client.get("/quarantine")
    assert refused.status_code == 403
    assert "您无权访问此页面。" in text(refused)

    AuthActions(client).logout()
    login(client, "admin")
    assert 'href="/quarantine"' in text(client.get("/"))
    page = text(client.get("/quarantine"))
    assert "sig: is required" in page and "kp-01:9" in page
    assert CONTACT not in page


def test_quarantine_page_redacts_contacts_at_any_depth(client, engine):
    payload = json.dumps({"a": [{"b": {"contacts": [{"id": "kp-01:1", "contact": CONTACT}]}}]})
    with engine.begin() as conn:
        conn.execute(
            db.quarantine.insert().values(
                received_at=db.utc_now(), topic="t", reason="r", payload=payload
            )
        )
    page = text(login(client, "admin").get("/quarantine"))
    assert "{&#34;a&#34;:[{&#34;b&#34;:{&#34;contacts&#34;:&#34;[redacted]&#34;}}]}" in page
    assert CONTACT not in page


def test_a_time_with_no_local_equivalent_is_shown_as_stored(client, engine):
    db.add_device(engine, "kp-01", "ee" * 32)
    with engine.begin() as conn:
        conn.execute(db.devices.update().values(last_seen="9999-12-31T23:59:59Z"))
    add_evaluation(engine, "kp-01:1", 5, "9999-12-31T23:59:59Z")
    login(client, "viewer")
    for path in ("/", "/evaluations", "/devices"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "9999-12-31T23:59:59Z" in text(response), path


def test_unknown_page_is_a_chinese_404(client):
    response = login(client, "viewer").get("/no-such-page")
    assert response.status_code == 404
    assert "页面不存在。" in text(response)


# --- the catalog ----------------------------------------------------------------------


def _message_ids():
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2.ext:babel_extract")]
    keywords = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(PACKAGE_DIR), method_map, keywords=keywords
    ):
        found.add(message)
    return found


def _catalog():
    return read_catalogs(PO_PATHS, "zh_CN")


def test_a_message_in_two_feature_catalogs_has_one_translation():
    seen = {}
    clashes = []
    for path in PO_PATHS:
        with path.open("rb") as po:
            for message in read_po(po, locale="zh_CN"):
                if not message.id:
                    continue
                if message.id in seen and seen[message.id][1] != message.string:
                    clashes.append((message.id, seen[message.id][0], path.name))
                seen.setdefault(message.id, (path.name, message.string))
    assert len(PO_PATHS) >= 1 and clashes == []


def test_every_message_has_a_chinese_translation():
    used = _message_ids()
    assert len(used) > 60  # the extractor really looked at the code and templates
    catalog = _catalog()
    missing = sorted(m for m in used if m not in catalog or not catalog[m].string)
    fuzzy = sorted(m for m in used if m in catalog and catalog[m].fuzzy)
    assert missing == [] and fuzzy == []


def test_the_catalog_has_no_stale_entries():
    used = _message_ids()
    stale = sorted(m.id for m in _catalog() if m.id and m.id not in used)
    assert stale == []


def test_placeholders_survive_translation():
    for message in _catalog():
        if message.id:
            assert re.findall(r"%\(\w+\)\w", message.id) == re.findall(
                r"%\(\w+\)\w", message.string
            ), message.id


def test_level_labels_translate_to_the_official_names(app):
    with app.test_request_context("/"):
        assert {s: str(label) for s, label in LEVEL_LABELS.items()} == dict(LEVEL_NAMES)
        assert str(CHANNEL_LABELS["paper"]) == "评议卡"


def test_catalogs_compile_when_missing_or_stale(tmp_path):
    source = tmp_path / "src"
    (source / "zh_CN" / "LC_MESSAGES").mkdir(parents=True)
    po = source / "zh_CN" / "LC_MESSAGES" / "messages.po"
    po.write_text('msgid "Yes"\nmsgstr "是"\n', encoding="utf-8")
    feature = source / "zh_CN" / "LC_MESSAGES" / "cases.po"  # a feature's own catalog
    feature.write_text('msgid "Case"\nmsgstr "工单"\n', encoding="utf-8")
    target = compile_catalogs(source, tmp_path / "out")
    mo = target / "zh_CN" / "LC_MESSAGES" / "messages.mo"
    assert (target / "zh_Hans_CN" / "LC_MESSAGES" / "messages.mo").exists()
    assert "是".encode() in mo.read_bytes() and "工单".encode() in mo.read_bytes()
    assert sorted(p.name for p in mo.parent.iterdir()) == ["messages.mo"]

    for compiled in target.glob("*/LC_MESSAGES/messages.mo"):  # a fresh .mo is left alone
        os.utime(compiled, (time.time() + 60, time.time() + 60))
    po.write_text('msgid "Yes"\nmsgstr "对"\n', encoding="utf-8")
    compile_catalogs(source, target)
    assert "是".encode() in mo.read_bytes()

    os.utime(po, (time.time() + 120, time.time() + 120))  # an edited .po is compiled again
    compile_catalogs(source, target)
    assert "对".encode() in mo.read_bytes()
    # another app's folder, same catalogs: the same bytes (compiled once per process)
    again = compile_catalogs(source, tmp_path / "out2") / "zh_CN" / "LC_MESSAGES" / "messages.mo"
    assert again.read_bytes() == mo.read_bytes()


# --- hcp collector ...  -----------------------------------------------------------------


def test_cli_create_user_and_its_errors(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    args = ["collector", "create-user", "zhang", "--role", "supervisor", "--db", url]
    assert hcp_main([*args, "--password", "zhang-pass-1"]) == 0
    assert capsys.readouterr().out == "user zhang (supervisor) created\n"
    assert hcp_main([*args, "--password", "zhang-pass-2"]) == 1
    assert capsys.readouterr().err == "error: username: 'zhang' already exists\n"
    assert hcp_main([*args[:2], "li", "--role", "admin", "--db", url, "--password", "short"]) == 1
    assert capsys.readouterr().err == "error: password: must be at least 8 characters\n"


def test_cli_create_user_prompts_for_the_password(tmp_path, capsys, monkeypatch):
    answers = iter(["prompted-pass", "prompted-pass", "one-pass-1", "other-pass-2"])
    monkeypatch.setattr("getpass.getpass", lambda _prompt: next(answers))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert hcp_main(["collector", "create-user", "wang", "--role", "admin", "--db", url]) == 0
    assert hcp_main(["collector", "create-user", "zhao", "--role", "admin", "--db", url]) == 1
    assert capsys.readouterr().err == "error: the two passwords differ\n"


def test_cli_add_device_prints_a_new_key_once(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert hcp_main(["collector", "add-device", "kp-07", "--window", "A07", "--db", url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "device kp-07 (keypad) registered"
    key_hex = out[1].rsplit(" ", 1)[1]
    assert re.fullmatch(r"[0-9a-f]{64}", key_hex)
    engine = db.make_engine(url)
    with engine.connect() as conn:
        row = conn.execute(select(db.devices).where(db.devices.c.device_id == "kp-07")).one()
    assert (row.key_hex, row.window_id, row.kind) == (key_hex, "A07", "keypad")

    given = "0123456789ABCDEF" * 4
    assert (
        hcp_main(
            ["collector", "add-device", "ks-01", "--kind", "kiosk", "--key", given, "--db", url]
        )
        == 0
    )
    assert capsys.readouterr().out == "device ks-01 (kiosk) registered\n"  # no key printed
    assert hcp_main(["collector", "add-device", "kp-07", "--db", url]) == 1
    assert capsys.readouterr().err == "error: device_id: 'kp-07' is already registered\n"
    assert hcp_main(["collector", "add-device", "kp 8", "--db", url]) == 1
    assert capsys.readouterr().err == (
        "error: device_id: must be 1..32 characters of A-Z a-z 0-9 - _\n"
    )
    assert hcp_main(["collector", "add-device", "kp-08", "--key", "abcd", "--db", url]) == 1
    assert capsys.readouterr().err == (
        "error: --key: must be at least 16 bytes as hex (32 hex characters or more)\n"
    )
    engine.dispose()


def test_cli_serve_refuses_a_bad_mqtt_url(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert hcp_main(["collector", "serve", "--db", url, "--mqtt", "http://x:1"]) == 1
    assert capsys.readouterr().err == (
        "error: --mqtt: must look like mqtt://HOST:PORT, got 'http://x:1'\n"
    )


def test_cli_serve_runs_ingest_and_web_and_stops_on_ctrl_c(tmp_path):
    from hcp.broker import free_port, start_broker

    with start_broker("amqtt", port=free_port(), workdir=str(tmp_path / "broker")) as broker:
        web_port = free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hcp",
                "collector",
                "serve",
                "--db",
                f"sqlite:///{tmp_path / 'c.db'}",
                "--mqtt",
                broker.url,
                "--port",
                str(web_port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            first = process.stdout.readline()
            assert first == f"collector web: http://127.0.0.1:{web_port}/\n"
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/login", timeout=5) as page:
                assert "临淄区政务服务好差评" in page.read().decode()
            process.send_signal(2)  # SIGINT, as Ctrl-C sends
            out, err = process.communicate(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, err
        assert out.endswith("collector stopped (0 records stored this run)\n")


def test_the_quarantine_page_says_what_its_limits_turned_away(client, engine):
    page = text(login(client, "admin").get("/quarantine"))
    assert 'id="dropped"' not in page
    with engine.begin() as conn:
        conn.execute(
            db.quarantine_dropped.insert().values(
                device_id="kp-02", hour="2026-11-27T03", dropped=7
            )
        )
    page = text(client.get("/quarantine"))
    assert "因隔离区容量限制未予保留（未确认，设备稍后会重发）：7" in page
    assert client.get("/api/v1/quarantine?device_id=kp-02").get_json()["dropped"] == 7
    assert client.get("/api/v1/quarantine?device_id=kp-01").get_json()["dropped"] == 0


def test_the_dashboard_shows_the_report_to_the_province_to_who_may_read_it(engine, client):
    from sync_server.schema_outbox import outbox

    with engine.begin() as conn:
        conn.execute(
            outbox.insert(),
            [
                {"kind": "rating", "ref": "kp-01:1", "state": "pending",
                 "stored_at": "2026-11-27T01:00:00.000000Z", "attempts": 0},
                {"kind": "rating", "ref": "kp-01:2", "state": "dead",
                 "stored_at": "2026-11-27T01:00:01.000000Z", "attempts": 1},
                {"kind": "rating", "ref": "kp-01:3", "state": "held",
                 "stored_at": "2026-11-27T01:00:02.000000Z", "attempts": 0},
            ],
        )  # fmt: skip
    page = text(login(client, "viewer").get("/"))
    assert '<div class="value" id="report-unsent">1</div>' in page
    assert '<div class="value bad" id="report-dead">1</div>' in page
    assert (
        "暂缓上报：待补差评原因" in page and '<div class="value" id="report-held">1</div>' in page
    )
    assert 'id="report-held-overdue"' not in page
    with engine.begin() as conn:  # one waits past HCP_OUTBOX_REASON_WAIT_DAYS
        conn.execute(
            outbox.insert().values(kind="rating", ref="kp-01:4", state="overdue", attempts=0,
                                   stored_at="2026-11-20T01:00:00.000000Z")
        )  # fmt: skip
    page = text(client.get("/"))
    assert '<div class="value bad" id="report-held">2</div>' in page
    assert '<div class="muted bad" id="report-held-overdue">其中1条已超期</div>' in page
    assert "向省平台上报" in page and "未运行" in page


def test_the_admins_menu_follows_the_days_work(client):
    # the loop first, then the channels, reporting upward, the devices, the system
    page = text(login(client, "admin").get("/"))
    nav = page[page.index("<nav>") : page.index("</nav>")]
    labels = [label.strip() for label in re.findall(r"<a [^>]*>([^<]+)</a>", nav)]
    assert labels == [
        "总览", "评价记录", "分单位统计", "差评整改", "每日提醒", "排名通报", "整改时限",
        "窗口二维码", "评议卡", "上报省平台", "刷评线索", "设备管理", "固件", "组织机构",
        "设备状态", "评价内容", "省级渠道代码", "隔离区", "用户与令牌", "审计日志",
    ]  # fmt: skip


def test_a_secret_is_made_in_an_instance_folder_that_does_not_exist_yet(tmp_path):
    # a fresh checkout: an ingest sealing its first contact before any app made the folder
    from sync_server import instance_file

    folder = tmp_path / "fresh" / "instance"
    key = instance_file(str(folder), "phone_key", 8)
    assert len(bytes.fromhex(key)) == 8 and instance_file(str(folder), "phone_key", 8) == key
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "phone_key").stat().st_mode & 0o777 == 0o600
