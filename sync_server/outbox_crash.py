"""The outbox's crash run: the whole collector killed, not just its sender.

Every part is real and runs as it does in a hall:

- Mosquitto (persistence and access control on: hcp/fault_processes.py's
  start_run_broker) and the simulated province (in this process);
- the collector, `hcp collector serve` as its own process (the MQTT ingest,
  the web app and the outbox sender in it, configured by a settings file);
- simulated keypads (the firmware on the simulated board), each on a window
  PC link (a pseudo-terminal and hcp/window.py's WindowPort): for each
  citizen the business system registers the case's service event (the way
  the collector's API does, sync_server/service_events.py) and starts the
  case on the keypad, and the citizen presses a level. A 差评 carries no
  reason (the keypads have no tags), so it is held for its reason.

While keypads rate, the province goes down (drops connections), slow,
answers half its requests with 500, answers garbage and refuses without a
reason, and the collector is killed with SIGKILL twice (once while a
request to the province is in flight) and started again. Then the citizens
go home, the keypads drain, the unit's call-back records the reason of each
held 差评 (the case's verify step), and the judge checks:

- every keypad record 1..last_seq stored once;
- every service event and every rating at the province exactly once;
  events in the order stored; ratings in the order stored, apart from the
  held 差评 (they go when their reason comes); each rating after its event;
- every time as stored (Asia/Shanghai local time of the stored UTC);
- dead letters exactly what the province refused, each with its reason;
  nothing left waiting.

tests/test_outbox_crash.py runs it briefly (a few hundred records);
`hcp outbox crash-run --seconds 120 --keypads 6` runs it longer.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from simulators.province import Province, serve
from sync_server import db, org, province_map, tags
from sync_server.outbox_fault import province_moods
from sync_server.schema_channels import service_events
from sync_server.schema_outbox import outbox as outbox_table

ROOT = Path(__file__).resolve().parent.parent
ITEM = "11370305XK00001"
KEYPAD = {"ack_timeout_ms": 2000, "confirm_ms": 50, "timeout_ms": 1000}
REASON = "等候时间长"  # what the raters said at the call-back
SENDER = {
    "HCP_OUTBOX_BACKOFF_S": 0.05,
    "HCP_OUTBOX_BACKOFF_MAX_S": 0.4,
    "HCP_OUTBOX_LEASE_S": 1.0,
    "HCP_OUTBOX_BATCH": 40,
    "HCP_OUTBOX_POLL_S": 0.05,
    "HCP_PROVINCE_TIMEOUT_S": 1.0,
    "HCP_GAMING_SCAN_S": 3600,
}


def _utc(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Collector:
    """`hcp collector serve` as a process of its own, killed and started again."""

    def __init__(self, workdir: Path, db_url: str, mqtt_url: str, settings: Path):
        self.command = [
            sys.executable, "-m", "hcp", "collector", "serve", "--db", db_url,
            "--mqtt", mqtt_url, "--client-id", "hcp-crash-run", "--port", "0",
            "--settings", str(settings),
        ]  # fmt: skip
        self.log = workdir / "collector.log"
        self.proc: subprocess.Popen | None = None
        self.kills = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Counter(threading.Thread):
    """One window: its PC starts each citizen's case on the keypad after the
    business system registered the service event; the citizen rates."""

    def __init__(self, engine, keypad, uart, window_id: str, seed: int, stop: threading.Event):
        import serial

        from hcp.window import WindowPort

        super().__init__(name=f"counter-{window_id}", daemon=True)
        self.engine, self.keypad, self.uart, self.window_id = engine, keypad, uart, window_id
        self.serial = serial.serial_for_url(uart.path, baudrate=115200, timeout=0.05)
        self.port = WindowPort(self.serial)
        self.random = random.Random(seed)
        self.stop = stop
        self.cases = 0
        self.failures: list[str] = []
        self.stamp = secrets.token_hex(3)

    def run(self) -> None:
        from hcp.window import NoAnswer, Refused
        from sync_server.service_events import EventError, register_one

        while not self.stop.is_set():
            self.cases += 1
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            body = {
                "case_no": f"K{self.stamp}-{self.window_id}-{self.cases:05d}",
                "service_no": "1",
                "item_code": ITEM,
                "unit_id": "hall-ws",
                "window_id": self.window_id,
                "staff_id": "1001",
                "handled_at": _utc(now),
            }
            try:
                register_one(self.engine, body, "window_pc", "crash-run")
                self.port.command("start", case_no=body["case_no"], service_no="1",
                                  item_code=ITEM, staff_id="1001", org_id="hall-ws",
                                  handled_at=body["handled_at"])  # fmt: skip
                self.keypad.rate(self.random.choice((5, 5, 5, 4, 4, 3, 2, 1)))
            except (EventError, NoAnswer, Refused, OSError, TimeoutError) as exc:
                self.failures.append(f"{body['case_no']}: {exc}")
                self.stop.wait(0.2)
            except Exception as exc:  # the judge reports it; the counter goes on
                self.failures.append(f"{body['case_no']}: {exc!r}")
                self.stop.wait(0.2)

    def close(self) -> None:
        self.port.close()
        self.serial.close()
        self.uart.close()


def prepare(engine, keypads: int) -> list[tuple[str, str, str]]:
    """The hall, its windows and staff, and the keypads' devices: [(id, key, window)]."""
    org.seed(engine)
    tags.seed(engine)
    devices = []
    with engine.begin() as conn:
        if org.get(conn, "units", "hall-ws") is None:
            org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
        if org.get(conn, "staff", "1001") is None:
            org.add(conn, "staff", "1001", "张敏", "hall-ws")
        for n in range(1, keypads + 1):
            window = f"C{n:02d}"
            if org.get(conn, "windows", window) is None:
                org.add(conn, "windows", window, f"闻韶{n}号窗", "hall-ws")
            devices.append((f"kp-crash-{n:02d}", secrets.token_hex(32), window))
    for device_id, key, window in devices:
        db.add_device(engine, device_id, key, window_id=window)
    return devices


def _verify_held(engine) -> set[str]:
    """The unit's call-back for each 差评 held for its reason: the verify
    step records what the rater said. Returns the ratings it did."""
    from sync_server import cases_workflow
    from sync_server.cases import case_of_record

    o = outbox_table.c
    done = set()
    with engine.begin() as conn:
        held = conn.execute(select(o.ref).where(o.state == "held")).scalars().all()
        for record_id in held:
            case = case_of_record(conn, record_id)
            if case is None or case["state"] != "open":
                continue
            if case["unit_id"] is None:
                cases_workflow.assign(conn, case["id"], "hall-ws")
            cases_workflow.take_step(conn, case["id"], "verify",
                                     {"note": "回访核实", "reason": REASON})  # fmt: skip
            done.add(record_id)
    return done


def _waiting(engine) -> int:
    o = outbox_table.c
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(outbox_table).where(o.state.in_(("pending", "held")))
        ).scalar()


def run(db_url: str | None = None, seconds: float = 20.0, keypads: int = 3,
        workdir=".hcp-outbox-crash") -> dict:  # fmt: skip
    from hcp.fault_processes import collector_url, start_run_broker
    from simulators.keypad import SimKeypad
    from simulators.uart import PtyUART

    started = time.monotonic()
    folder = Path(workdir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if db_url is None:
        for leftover in folder.glob("collector.db*"):
            leftover.unlink()
        db_url = f"sqlite:///{folder / 'collector.db'}"
    engine = db.make_engine(db_url)
    db.init(engine)
    devices = prepare(engine, keypads)
    province = Province()
    server, province_url = serve(province)
    credential = folder / "credential.json"
    credential.write_text(json.dumps(province.issue_credential()))
    settings = folder / "settings.toml"
    lines = [f'HCP_PROVINCE_URL = "{province_url}"', f'HCP_PROVINCE_CREDENTIAL = "{credential}"']
    lines += [f"{key} = {value}" for key, value in SENDER.items()]
    settings.write_text("\n".join(lines) + "\n")
    broker = start_run_broker(folder, [(device_id, key) for device_id, key, _w in devices])
    collector = Collector(folder, db_url, collector_url(broker), settings)
    collector.start()
    stop = threading.Event()
    pads, counters = [], []
    try:
        for n, (device_id, key, window) in enumerate(devices):
            uart = PtyUART()
            data = folder / device_id
            pad = SimKeypad(device_id, key, broker.host, broker.port, str(data), uart=uart,
                            **KEYPAD).start()  # fmt: skip
            pads.append(pad)
            counters.append(Counter(engine, pad, uart, window, 100 + n, stop))
        for counter in counters:
            counter.start()
        in_flight = _schedule(province, collector, seconds)
        stop.set()
        for counter in counters:
            counter.join(30)
        drained = all(pad.wait_drained(timeout=120) for pad in pads)
        verified = set()
        deadline = time.monotonic() + max(60.0, seconds)
        # the held 差评 go once their reason is recorded (ratings of the
        # last moments may still be arriving: look again until none wait)
        while time.monotonic() < deadline and _waiting(engine):
            verified |= _verify_held(engine)
            time.sleep(0.2)
        kept = {pad.settings["device_id"]: pad.call(lambda d: d.store.last_seq) for pad in pads}
    finally:
        stop.set()
        collector.stop()
        for pad in pads:
            pad.stop()
        for counter in counters:
            counter.close()
        broker.stop()
    result = judge(engine, province, kept, verified)
    result.update(
        drained=drained,
        kills=collector.kills,
        killed_in_flight=in_flight,
        cases_started=sum(c.cases for c in counters),
        counter_failures=sum(len(c.failures) for c in counters),
        seconds=round(time.monotonic() - started, 1),
        database=engine.dialect.name,
    )
    if not drained:
        result["ok"] = False
        result["problems"].append("a keypad kept records it could not deliver")
    server.shutdown()
    server.server_close()
    engine.dispose()
    return result


def _schedule(province: Province, collector: Collector, seconds: float) -> bool:
    """The province's moods and the two kills of the whole collector; True
    when the first kill hit while a request to the province was being answered."""

    def kill_and_restart():
        collector.kill()
        time.sleep(0.5)  # the keypads keep rating into the broker meanwhile
        collector.start()

    return province_moods(province, seconds / 8, kill_and_restart)


def judge(engine, province: Province, kept: dict[str, int], verified: set[str]) -> dict:
    problems = []
    o = outbox_table.c
    ev = db.evaluations.c
    with engine.connect() as conn:
        rows = conn.execute(select(o.id, o.kind, o.ref, o.state, o.reason).order_by(o.id)).all()
        stored = {
            r.id: r for r in conn.execute(select(ev.id, ev.device_id, ev.seq, ev.effective_at))
        }
        events = {
            f"{e.case_no}/{e.service_no}": e.handled_at
            for e in conn.execute(select(service_events))
        }
    for device_id, last_seq in kept.items():
        seqs = sorted(r.seq for r in stored.values() if r.device_id == device_id)
        if seqs != list(range(1, last_seq + 1)):
            problems.append(f"{device_id}: made 1..{last_seq}, stored {len(seqs)} records")
    ratings_in_outbox = {r.ref for r in rows if r.kind == "rating"}
    if ratings_in_outbox != set(stored):
        problems.append("a stored rating has no outbox row, or the reverse")
    got = province.received()
    log = [tuple(entry) for entry in got["log"]]
    acked = [(r.kind, r.ref) for r in rows if r.state == "acked"]
    if len(log) != len(set(log)):
        problems.append(f"the province logged {len(log) - len(set(log))} item(s) twice")
    if set(log) != set(acked):
        missing, extra = set(acked) - set(log), set(log) - set(acked)
        problems.append(f"acked but not at the province: {sorted(missing)[:5]}; "
                        f"at the province but not acked: {sorted(extra)[:5]}")  # fmt: skip
    at_province = set(log)
    for kind in ("event", "rating"):
        ours = [(k, ref) for k, ref in ((r.kind, r.ref) for r in rows)
                if k == kind and (k, ref) in at_province and ref not in verified]  # fmt: skip
        theirs = [item for item in log if item[0] == kind and item[1] not in verified]
        if theirs != ours:
            problems.append(f"{kind}s reached the province out of their stored order")
    position = {item: index for index, item in enumerate(log)}
    for item in got["evaluations"]:
        payload = item["payload"]
        rating = ("rating", payload["evaluationId"])
        event = position.get(("event", f"{payload['projectNo']}/{payload['serviceNo']}"))
        if event is None or event > position[rating]:
            problems.append(
                f"rating {payload['evaluationId']} reached the province before its event"
            )
        want = province_map.local_time(stored[payload["evaluationId"]].effective_at)
        if payload["assessTime"] != want:
            problems.append(
                f"{payload['evaluationId']}: assessTime {payload['assessTime']} != {want}"
            )
        # a 不满意 goes with the tag of that text, a 非常不满意 (no such tag) with the text
        reason = (payload["evalDetail"], payload["evalContent"])
        if payload["evaluationId"] in verified and reason not in (("H201", ""), ("", REASON)):
            problems.append(f"{payload['evaluationId']}: went up without its reason")
    for item in got["events"]:
        payload = item["payload"]
        key = f"{payload['projectNo']}/{payload['serviceNo']}"
        if payload["handleTime"] != province_map.local_time(events[key]):
            problems.append(f"event {key}: handleTime changed")
    refused = {(entry["id"], entry["reason"]) for entry in got["refused"]}
    dead = {(r.ref, r.reason) for r in rows if r.state == "dead"}
    if dead != refused:
        problems.append(f"dead letters {sorted(dead)[:5]} != refused {sorted(refused)[:5]}")
    states: dict[str, int] = {}
    for r in rows:
        states[r.state] = states.get(r.state, 0) + 1
        if r.state not in ("acked", "dead"):
            problems.append(f"{r.kind} {r.ref}: left {r.state} ({r.reason})")
    return {
        "ok": not problems,
        "problems": problems[:20],
        "events": sum(1 for r in rows if r.kind == "event"),
        "ratings": sum(1 for r in rows if r.kind == "rating"),
        "held_then_sent": len(verified),
        "states": states,
        "province_counts": got["counts"],
    }
