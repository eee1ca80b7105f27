"""The outbox's fault run: the province down, slow, failing and answering
garbage while ratings are stored and the sender is killed and restarted.

`run` starts the simulated province in this process, the sender as its own
process (`python -m sync_server.outbox_cli send`), and a producer that
registers service events and stores ratings through
features.store_evaluations, the collector's one way in. Among them it plants
ratings the province must refuse (a content code outside the version in
force) and repeat ratings that must not go up. Then it judges:

- every event and every reportable rating is in the province's log exactly
  once, events in their order, ratings in their order, each rating after its
  event;
- every time arrives as stored (Asia/Shanghai local time of the stored UTC);
- dead letters are exactly the planted refusals, each with the province's
  reason; repeats are kept as not reported; nothing is left pending.

tests/test_outbox_fault.py runs it briefly on both databases;
`hcp outbox fault-run --seconds 120` runs it longer.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import select

from simulators.province import Province, serve
from sync_server import db, features, org, province_map, tags
from sync_server.schema_channels import service_events
from sync_server.schema_outbox import outbox as outbox_table

ROOT = Path(__file__).resolve().parent.parent
PLANTED_REASON = "evalDetail: H999 is not a code of version hcp-demo-1"
GOOD_TAGS = {5: "H501", 4: "H401", 3: "H301", 2: "H201", 1: "H101"}


def _utc(offset_s: float = 0.0) -> str:
    moment = time.time() + offset_s
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def prepare(engine) -> None:
    org.seed(engine)
    tags.seed(engine)
    with engine.begin() as conn:
        if org.get(conn, "units", "hall-ws") is None:
            org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
            org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")
        if org.get(conn, "staff", "1001") is None:
            org.add(conn, "staff", "1001", "张敏", "hall-ws")


def register_event(conn, case_no: str, handled_at: str) -> None:
    """The business system registers the case's service event, the way the
    collector takes it (sync_server/service_events.py, which tells the outbox)."""
    from sync_server import service_events as registration

    body = {
        "case_no": case_no,
        "service_no": "1",
        "item_code": "11370305XK00001",
        "unit_id": "hall-ws",
        "window_id": "A01",
        "staff_id": "1001",
        "handled_at": handled_at,
    }
    registration.register(conn, body, "demo", "fault-run")


def rating_row(record_id: str, case_no: str, stars: int, tag: str, **extra) -> dict:
    now = _utc()
    row = {
        "id": record_id,
        "device_id": None,
        "seq": None,
        "stars": stars,
        "channel": "keypad",
        "tags": json.dumps([tag]),
        "content_version": "hcp-demo-1",
        "case_no": case_no,
        "service_no": "1",
        "window_id": "A01",
        "rated_at": now,
        "clock": "ntp",
        "origin": "citizen",
        "attempt": 1,
        "received_at": db.utc_now(),
        "effective_at": now,
        "time_source": "device",
        "excluded": False,
        "reason_owed": False,
    }
    row.update(extra)
    return row


class Producer(threading.Thread):
    """Registers an event and stores its rating(s), `count` times, `rate` a second."""

    def __init__(self, engine, count: int, rate: float, seed: int):
        super().__init__(name="fault-producer", daemon=True)
        self.engine, self.count, self.rate = engine, count, rate
        self.random = random.Random(seed)
        self.planted: set[str] = set()
        self.repeats: set[str] = set()
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            for number in range(1, self.count + 1):
                self.one(number)
                if self.stop.wait(1 / self.rate):
                    return
        except BaseException as exc:  # the judge reports it
            self.error = exc

    def one(self, number: int) -> None:
        case_no = f"F{number:05d}"
        stars = self.random.choice((5, 5, 5, 4, 4, 3, 2, 1))
        rows = []
        tag = GOOD_TAGS[stars]
        if number % 17 == 0:
            tag = "H999"  # planted: the province must refuse it with its reason
            self.planted.add(f"fault:{number}")
        rows.append(rating_row(f"fault:{number}", case_no, stars, tag))
        if number % 13 == 0:  # a second first rating of the same event: never reported
            rows.append(rating_row(f"fault:{number}r", case_no, 5, "H501", repeat_of=rows[0]["id"]))
            self.repeats.add(f"fault:{number}r")
        if number % 10 == 0 and tag != "H999":  # an appended rating after rectification
            rows.append(
                rating_row(f"fault:{number}a", case_no, 4, "H401", attempt=2, follows=rows[0]["id"])
            )
        with self.engine.begin() as conn:
            register_event(conn, case_no, _utc(-5))
        with self.engine.begin() as conn:
            features.store_evaluations(conn, self.engine, rows)


def start_sender(db_url: str, province_url: str, credential_path: Path, log_path: Path):
    command = [
        sys.executable, "-m", "sync_server.outbox_cli", "send", "--db", db_url,
        "--province", province_url, "--credential", str(credential_path),
        "--backoff", "0.05", "--backoff-max", "0.4", "--lease", "1", "--batch", "40",
        "--poll", "0.05", "--timeout", "1",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log_path.open("ab"), stderr=subprocess.STDOUT
    )


def _until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def province_moods(province: Province, step: float, kill) -> bool:
    """The province's faults in the order both fault runs play them (down,
    slow, failing half its requests, garbage, refusing without a reason), with
    `kill()` of the sender's process twice, the first time while a request is
    in flight; True when one was. Each bad mood lasts until the sender has met
    it twice."""

    def faults_seen(count=2):
        start = province.counts["faults"]
        _until(lambda: province.counts["faults"] >= start + count, 30)

    time.sleep(step)
    province.set_mode("down")
    time.sleep(step)
    faults_seen()
    province.set_mode("slow", delay_s=0.3)
    time.sleep(step / 2)
    _until(lambda: province.in_flight > 0, 30)
    in_flight = province.in_flight > 0
    kill()  # while a request is in flight: the province answers a dead sender
    province.set_mode("ok", error_rate=0.5)
    time.sleep(step)
    faults_seen()
    province.set_mode("garbage")
    time.sleep(step / 2)
    faults_seen()
    kill()
    province.set_mode("refuse_no_reason")
    time.sleep(step / 2)
    faults_seen()
    province.set_mode("slow", delay_s=0.2)
    time.sleep(step)
    province.set_mode("ok")
    time.sleep(step)
    return in_flight


def _wait_ready(log_path: Path, starts: int, timeout_s: float = 60.0) -> None:
    """Until the sender's log says it started `starts` times (imports take
    seconds on a loaded machine)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log_path.exists() and log_path.read_text().count("outbox sender:") >= starts:
            return
        time.sleep(0.05)
    raise RuntimeError(f"the sender did not start: {log_path}")


def run(db_url: str | None = None, seconds: float = 20.0, workdir=".hcp-outbox-fault") -> dict:
    started = time.monotonic()
    folder = Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    if db_url is None:
        path = folder / "collector.db"
        for leftover in folder.glob("collector.db*"):
            leftover.unlink()
        db_url = f"sqlite:///{path}"
    engine = db.make_engine(db_url)
    db.init(engine)
    prepare(engine)
    province = Province()
    server, province_url = serve(province)
    credential_path = folder / "credential.json"
    credential_path.write_text(json.dumps(province.issue_credential()))
    log_path = folder / "sender.log"
    producer = Producer(engine, count=100_000, rate=20.0, seed=1)
    sender = start_sender(db_url, province_url, credential_path, log_path)
    _wait_ready(log_path, 1)
    producer.start()
    kills = 0

    def restart():
        nonlocal sender, kills
        sender.send_signal(signal.SIGKILL)
        sender.wait()
        kills += 1
        sender = start_sender(db_url, province_url, credential_path, log_path)
        _wait_ready(log_path, kills + 1)  # ratings are stored meanwhile

    province_moods(province, seconds / 8, restart)
    producer.stop.set()
    producer.join()
    deadline = time.monotonic() + max(30.0, seconds)
    while time.monotonic() < deadline and _pending(engine):
        time.sleep(0.1)
    sender.send_signal(signal.SIGTERM)
    try:
        sender.wait(timeout=10)
    except subprocess.TimeoutExpired:
        sender.kill()
        sender.wait()
    result = judge(engine, province, producer)
    result.update(
        kills=kills, seconds=round(time.monotonic() - started, 1), database=engine.dialect.name
    )
    server.shutdown()
    server.server_close()
    engine.dispose()
    return result


def _pending(engine) -> int:
    o = outbox_table.c
    with engine.connect() as conn:
        return len(conn.execute(select(o.id).where(o.state == "pending")).all())


def judge(engine, province: Province, producer: Producer) -> dict:
    problems = []
    if producer.error is not None:
        problems.append(f"producer failed: {producer.error!r}")
    o = outbox_table.c
    with engine.connect() as conn:
        rows = conn.execute(select(o.id, o.kind, o.ref, o.state, o.reason).order_by(o.id)).all()
        stored = {
            r.id: r
            for r in conn.execute(select(db.evaluations.c.id, db.evaluations.c.effective_at))
        }
        events = {
            f"{e.case_no}/{e.service_no}": e.handled_at
            for e in conn.execute(select(service_events))
        }
    got = province.received()
    log = [tuple(entry) for entry in got["log"]]
    expected = [(r.kind, r.ref) for r in rows if r.ref not in producer.planted | producer.repeats]
    if len(log) != len(set(log)):
        problems.append(f"the province logged {len(log) - len(set(log))} item(s) twice")
    if set(log) != set(expected):
        missing = set(expected) - set(log)
        extra = set(log) - set(expected)
        problems.append(
            f"missing at the province: {sorted(missing)[:5]}; extra: {sorted(extra)[:5]}"
        )
    for kind in ("event", "rating"):
        ours = [ref for k, ref in expected if k == kind]
        theirs = [ref for k, ref in log if k == kind]
        if theirs != [ref for ref in ours if (kind, ref) in set(log)]:
            problems.append(f"{kind}s reached the province out of order")
    position = {item: index for index, item in enumerate(log)}
    for kind, ref in log:
        if kind == "rating":
            case = ref.split(":")[1].rstrip("ar")
            event_at = position.get(("event", f"F{int(case):05d}/1"))
            if event_at is None or event_at > position[(kind, ref)]:
                problems.append(f"rating {ref} reached the province before its event")
    for item in got["evaluations"]:
        payload = item["payload"]
        want = province_map.local_time(stored[payload["evaluationId"]].effective_at)
        if payload["assessTime"] != want:
            problems.append(
                f"{payload['evaluationId']}: assessTime {payload['assessTime']} != {want}"
            )
    for item in got["events"]:
        payload = item["payload"]
        key = f"{payload['projectNo']}/{payload['serviceNo']}"
        if payload["handleTime"] != province_map.local_time(events[key]):
            problems.append(f"event {key}: handleTime changed")
    refused = {entry["id"] for entry in got["refused"]}
    if refused - producer.planted:
        problems.append(f"refused but not planted: {sorted(refused - producer.planted)[:5]}")
    states: dict[str, int] = {}
    for r in rows:
        states[r.state] = states.get(r.state, 0) + 1
        if r.ref in producer.planted:
            if (r.state, r.reason) != ("dead", PLANTED_REASON):
                problems.append(f"{r.ref}: {r.state} ({r.reason}), planted to be refused")
        elif r.ref in producer.repeats:
            if r.state != "skipped":
                problems.append(f"{r.ref}: {r.state}, a repeat must not be reported")
        elif r.state != "acked":
            problems.append(f"{r.kind} {r.ref}: {r.state} ({r.reason})")
    return {
        "ok": not problems,
        "problems": problems[:20],
        "events": sum(1 for r in rows if r.kind == "event"),
        "ratings": sum(1 for r in rows if r.kind == "rating"),
        "states": states,
        "province_counts": got["counts"],
        "planted_refusals": len(producer.planted),
        "refused_items": len(refused),  # a refusal sent again after a kill counts once here
        "repeats": len(producer.repeats),
    }
