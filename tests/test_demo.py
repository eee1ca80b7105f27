"""`hcp demo` as a user runs it: a real process, the embedded broker, real sockets."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiosk import demo_content
from tests.harness.broker import require_kind

ROOT = Path(__file__).resolve().parent.parent
FINAL = re.compile(
    r"停止 stopped: (\d+) 次评价 ratings made, (\d+) 条入库 stored .* (\d+) 条留在设备上"
)


def demo(workdir, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "hcp", "demo", "--workdir", str(workdir), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )


def stored_in(workdir) -> int:
    """The keypads' ratings in the collector (the demo's other channels apart)."""
    with sqlite3.connect(workdir / "collector.db") as conn:
        return conn.execute("SELECT count(*) FROM evaluations WHERE channel = 'keypad'").fetchone()[
            0
        ]


def query(workdir, sql, *args):
    with sqlite3.connect(workdir / "collector.db") as conn:
        return conn.execute(sql, args).fetchall()


# the embedded broker runs in the every-channel test below; the same run on it is long
@pytest.mark.parametrize("broker", [pytest.param("amqtt", marks=pytest.mark.long), "mosquitto"])
def test_an_unattended_demo_shows_ratings_arriving(tmp_path, broker):
    require_kind(broker)
    proc = demo(tmp_path, "--duration", "6", "--pace", "0.2", "--broker", broker)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    assert re.search(r"http://127\.0\.0\.1:\d+", out), out
    assert re.search(rf"mqtt://127\.0\.0\.1:\d+  \({broker}\)", out), out
    assert re.search(r"已收到 received +\d+", out), out
    made, stored, kept = (int(x) for x in FINAL.search(out).groups())
    assert made > 0 and stored > 0
    # nothing lost, nothing twice: every rating is in the collector or on a keypad
    assert stored + kept == made == stored_in(tmp_path) + kept


def test_ctrl_c_stops_cleanly_and_nothing_is_lost_across_runs(tmp_path):
    proc = demo(tmp_path, "--pace", "0.1")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "已收到 received" in line:
            break
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    made, stored, kept = (int(x) for x in FINAL.search(out).groups())
    assert stored + kept == made
    # the second run delivers what the keypads kept, and adds its own ratings
    proc = demo(tmp_path, "--duration", "3")
    out2, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out2
    made2, _stored2, kept2 = (int(x) for x in FINAL.search(out2).groups())
    assert stored_in(tmp_path) + kept2 == made + made2


def test_a_work_folder_whose_collector_knows_another_key_stops_at_once(tmp_path):
    # the demo's devices.json and collector.db belong together; a keypad whose
    # key the collector does not have would have every rating quarantined
    from hcp.stack import Device, LocalStack

    with LocalStack(tmp_path, "amqtt", devices=[Device("kp-demo-01", "aa" * 32)]) as stack:
        assert stack.ingest is not None
    stack = LocalStack(tmp_path, "amqtt", devices=[Device("kp-demo-01", "bb" * 32)])
    with pytest.raises(ValueError, match="kp-demo-01: the database .* holds another key"):
        stack.start()
    assert stack.broker is None and stack.ingest is None  # what had started is stopped again


def test_the_demo_shows_every_channel_the_province_and_a_flagged_burst(tmp_path):
    proc = demo(tmp_path, "--duration", "5", "--pace", "0.2")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    web = re.search(r"网页 web:    (http://127\.0\.0\.1:\d+)   \(admin / (\S+)\)", out).group(1)
    supervisor = re.search(r"督查 supervisor: supervisor / (\S+)", out).group(1)
    manager = re.search(r"单位管理员 unit manager \(闻韶街道\): wenshao / (\S+)", out).group(1)
    assert re.search(r"省平台 province \(simulated\): http://127\.0\.0\.1:\d+", out), out
    for name in ("窗口码 window QR", "办件码 case QR", "网站 web portal", "短信 SMS"):
        assert f"    {name}: 感谢您的评价！" in out, out
    assert re.search(r"评议卡 paper card: 评议卡 \S+ 已保存。", out), out
    assert re.search(r"自助机 kiosk \(ks-demo-02\): 办件 DEMO-\d+-KIOSK-1 已评价 rated", out), out
    assert f"用手机打开（窗口码） open on a phone: {web}/r/w/" in out, out
    # the kiosk process came up headless and reported its status
    line = re.search(r"自助机 kiosk: (\S+) headless, PIN (\d+), API (http://127\.0\.0\.1:\d+)", out)
    assert line, out
    assert line.group(1) == "ks-demo-01" and line.group(2) == demo_content.DEMO_PIN
    assert "ks-demo-01 ready, first frame" in (tmp_path / "ks-demo-01" / "kiosk.log").read_text()
    ((kind, raw),) = query(
        tmp_path, "SELECT kind, status FROM devices WHERE device_id = ?", line[1]
    )
    assert kind == "kiosk" and json.loads(raw)["fw"] == "kiosk-0.1.0"
    for label, path in (
        ("差评工单 bad-review cases", "/cases"),
        ("排名 rankings", "/rankings"),
        ("公示 public page", "/public"),
        ("上报省平台 reporting upward", "/outbox"),
        ("疑似刷评 gaming evidence", "/gaming"),
        ("设备 fleet", "/fleet"),
    ):
        assert f"    {label}: {web}{path}\n" in out, out
    assert "刷好评演示 planted burst: kp-demo-01 连按 5 次非常满意，无办件" in out, out
    assert "HCP_GAMING_OPENING=always" in out, out
    flag_id = int(
        re.search(rf"疑似刷评 gaming flag: {web}/gaming/(\d+)  \(督查 supervisor\)", out)[1]
    )
    status = re.findall(
        r"已收到 received +\d+ .* 上报 province: 待报 backlog (\d+), 已确认 acked (\d+), "
        r"延迟 lag p50 \S+.*  在办差评 open cases (\d+)",
        out,
    )
    assert status, out
    made, stored, kept = (int(x) for x in FINAL.search(out).groups())
    assert stored + kept == made == stored_in(tmp_path) + kept

    # every channel has its rating
    channels = dict(query(tmp_path, "SELECT channel, count(*) FROM evaluations GROUP BY channel"))
    assert set(channels) == {"keypad", "kiosk", "qr_window", "qr_case", "web", "sms", "paper"}
    assert channels["kiosk"] == 1 and channels["sms"] == 1 and channels["paper"] == 1
    # keypads rated the service events their window PCs started
    ((rated_by_keypad,),) = query(
        tmp_path,
        "SELECT count(*) FROM service_events s JOIN evaluations e ON e.id = s.rating_id "
        "WHERE e.channel = 'keypad' AND e.case_no = s.case_no AND s.source = 'demo'",
    )
    started = int(re.search(r"办件 cases started on keypads: (\d+);", out)[1])
    assert rated_by_keypad >= 1 and rated_by_keypad <= started
    # the province acknowledged events and ratings (the outbox's own record of it)
    acked = dict(
        query(tmp_path, "SELECT kind, count(*) FROM outbox WHERE state = 'acked' GROUP BY kind")
    )
    assert acked.get("event", 0) >= 1 and acked.get("rating", 0) >= 1, acked
    ((with_receipt,),) = query(
        tmp_path,
        "SELECT count(*) FROM outbox WHERE state = 'acked' AND province_ref IS NOT NULL",
    )
    assert with_receipt == acked["event"] + acked["rating"]

    # the planted burst, and only it, is flagged as a burst; nothing as outside hours
    burst = [f"kp-demo-01:{n}" for n in range(1, 6)]
    rows = query(
        tmp_path,
        f"SELECT stars, case_no FROM evaluations WHERE id IN ({','.join('?' * 5)})",
        *burst,
    )
    assert rows == [(5, None)] * 5
    flags = query(
        tmp_path,
        "SELECT id, rule, subject, evidence FROM gaming_flags "
        "WHERE rule IN ('burst_no_case', 'outside_hours') ORDER BY rule, id",
    )
    assert [(f[0], f[1], f[2]) for f in flags[:1]] == [(flag_id, "burst_no_case", "kp-demo-01")]
    assert json.loads(flags[0][3])["records"] == burst
    assert len(flags) == 1, flags  # the demo's hall never closes (HCP_GAMING_OPENING=always)

    # the supervisor sees the flag; a unit manager may not
    from tests.harness.collector import AuthActions, make_app

    app = make_app(tmp_path, SESSION_COOKIE_SECURE=False)
    try:
        with app.test_client() as client:
            auth = AuthActions(client)
            auth.login("supervisor", supervisor)
            page = client.get(f"/gaming/{flag_id}")
            assert page.status_code == 200
            assert "kp-demo-01:5" in page.get_data(as_text=True)
            auth.logout()
            auth.login("wenshao", manager)
            assert client.get(f"/gaming/{flag_id}").status_code == 403
    finally:
        app.extensions["hcp_engine"].dispose()
