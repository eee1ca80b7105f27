"""A simulated provincial 好差评 platform, for tests and the demo only.

It is strict the way the real one is described (DOMAIN.md §8, docs/reporting-upward.md):

- every request is signed with SM2 (over SM3) under a credential this
  province issued (`Province.issue_credential`), with a timestamp within five
  minutes and a nonce never seen before; an expired credential is refused;
- a service event (projectNo, serviceNo, taskCode, deptCode, areaCode,
  userId, handleTime) is registered before any rating that refers to it;
- a rating carries `satisfaction` (5 = 非常满意 ... 1 = 非常不满意), `pf`
  (1..7), `evalDetail` codes of the tag version in force at its `assessTime`
  and of its level, `assessNumber` (1 first, 2 appended), `assessTime` and
  free text; a 差评 needs a code or text; one first rating per event;
- times are Asia/Shanghai local time "YYYY-MM-DD HH:MM:SS"; a time in the
  future is refused, a rating timed before its event was handled is refused
  as backdated, and an item that reaches the province more than the late
  window (five minutes by default) after its time is flagged `late` (or
  refused with `late="refuse"`);
- an id received again with the same data is acknowledged again
  ("duplicate", same receipt); with different data it is refused, naming
  the field that changed.

For fault tests it can be made slow, unavailable (it drops the connection),
answer 500s (always, or at a rate), garbage, or refusals without a reason.
It keeps everything it accepted, in order, for the judge (`GET /_sim/received`).

    python -m simulators.province --port 8090 --credential-file cred.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import re
import secrets
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

from gmssl import sm2

LOCAL = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TIME_PATTERN = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
CREDIT_CODE = re.compile(r"[0-9A-HJ-NPQRTUWXY]{18}")  # 统一社会信用代码: 18 characters
AREA_CODE = re.compile(r"\d{12}")
MAX_BODY = 1024 * 1024
MAX_ITEMS = 500
MAX_TEXT = 500
TIMESTAMP_WINDOW_S = 300
MODES = ("ok", "slow", "down", "error", "garbage", "refuse_no_reason")
EVENTS_PATH = "/api/v1/service-events"
RATINGS_PATH = "/api/v1/evaluations"
EVENT_FIELDS = (
    "projectNo",
    "serviceNo",
    "taskCode",
    "deptCode",
    "areaCode",
    "userId",
    "handleTime",
)
RATING_FIELDS = (
    "evaluationId", "projectNo", "serviceNo", "taskCode", "deptCode", "areaCode", "userId",
    "pf", "satisfaction", "evalDetail", "evalContent", "assessTime", "assessNumber",
    "contentVersion",
)  # fmt: skip


def new_keypair() -> tuple[str, str]:
    """(private, public) SM2 keys as hex; the public one is x||y without 04."""
    curve = sm2.CryptSM2("1" * 64, "ab" * 64)
    order = int(curve.ecc_table["n"], 16)
    while True:
        private = secrets.randbelow(order - 2) + 1
        public = curve._kg(private, curve.ecc_table["g"])
        # gmssl strips a leading "04" with lstrip("04"), which also eats any
        # 0 or 4 after it: a key that starts so would be mangled, so draw again
        if not public.startswith("04"):
            return f"{private:064x}", public


def signed_text(method: str, path: str, app_id: str, timestamp: str, nonce: str, body: bytes):
    """The bytes a request's signature covers (docs/reporting-upward.md)."""
    head = f"{method} {path}\n{app_id}\n{timestamp}\n{nonce}\n"
    return head.encode() + hashlib.sha256(body).hexdigest().encode()


def _local(text) -> dt.datetime | None:
    if not isinstance(text, str) or not TIME_PATTERN.fullmatch(text):
        return None
    try:
        return dt.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=LOCAL)
    except ValueError:
        return None


def _text(item, field, limit=64, required=True):
    value = item.get(field)
    if value is None or value == "":
        return None if not required else f"{field}: required"
    if not isinstance(value, str) or len(value) > limit:
        return f"{field}: must be text of at most {limit} characters"
    return None


class Refused(Exception):
    pass


class Province:
    """The platform's state and rules, apart from HTTP (tests may call `handle`)."""

    def __init__(self, late_window_s=300, late="flag", tags=None, seed=0):
        self.lock = threading.Lock()
        self.late_window_s = late_window_s
        self.late = late  # flag | refuse
        # tag versions: [(in_force_from UTC datetime, version, {code: level})]
        self.tag_versions = sorted(tags or [_demo_tags()], key=lambda v: v[0])
        self.credentials: dict[str, dict] = {}
        self.nonces: set[str] = set()
        self.events: dict[tuple, dict] = {}
        self.ratings: dict[str, dict] = {}
        self.first_rating: dict[tuple, str] = {}
        self.log: list[tuple[str, str]] = []  # (kind, id) in the order accepted
        self.refused: list[dict] = []
        self.counts = {"requests": 0, "accepted": 0, "duplicate": 0, "refused": 0, "faults": 0}
        self.handling_s: list[float] = []  # own time per answered API request
        self.mode, self.delay_s, self.error_rate = "ok", 0.0, 0.0
        self.in_flight = 0  # API requests being answered now
        self.random = random.Random(seed)
        self.receipts = 0

    # --- control -------------------------------------------------------------------
    def issue_credential(self, valid_s: float = 365 * 86400, app_id: str | None = None) -> dict:
        private, public = new_keypair()
        app_id = app_id or "hcp-" + secrets.token_hex(4)
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=valid_s)
        with self.lock:
            self.credentials[app_id] = {"public_key": public, "expires_at": expires}
        return {
            "app_id": app_id,
            "private_key": private,
            "public_key": public,
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def set_mode(self, mode="ok", delay_s=0.0, error_rate=0.0) -> None:
        if mode not in MODES:
            raise ValueError("mode: must be one of " + ", ".join(MODES))
        self.mode, self.delay_s, self.error_rate = mode, float(delay_s), float(error_rate)

    def received(self) -> dict:
        with self.lock:
            return {
                "events": [dict(v) for v in self.events.values()],
                "evaluations": [dict(v) for v in self.ratings.values()],
                "log": [list(entry) for entry in self.log],
                "refused": list(self.refused),
                "counts": dict(self.counts),
                "handling_s": list(self.handling_s),
            }

    # --- requests ------------------------------------------------------------------
    def authenticate(self, method, path, headers, body) -> None:
        app_id = headers.get("X-HCP-App-Id", "")
        timestamp = headers.get("X-HCP-Timestamp", "")
        nonce = headers.get("X-HCP-Nonce", "")
        signature = headers.get("X-HCP-Signature", "")
        credential = self.credentials.get(app_id)
        if credential is None:
            raise Refused("credential: unknown app id")
        if credential["expires_at"] <= dt.datetime.now(dt.UTC):
            raise Refused("credential: expired")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TIMESTAMP_WINDOW_S:
            raise Refused("timestamp: outside the allowed window")
        if not re.fullmatch(r"[0-9a-f]{32}", nonce) or nonce in self.nonces:
            raise Refused("nonce: missing or used before")
        if not re.fullmatch(r"[0-9a-f]{128}", signature):
            raise Refused("signature: missing or malformed")
        verifier = sm2.CryptSM2("1" * 64, credential["public_key"])
        if not verifier.verify_with_sm3(
            signature, signed_text(method, path, app_id, timestamp, nonce, body)
        ):
            raise Refused("signature: does not verify")
        self.nonces.add(nonce)

    def handle(self, method: str, path: str, headers, body: bytes) -> tuple[int, dict]:
        if path not in (EVENTS_PATH, RATINGS_PATH) or method != "POST":
            return 404, {"code": 404, "msg": "no such interface"}
        if len(body) > MAX_BODY:
            return 413, {"code": 413, "msg": "body: too large"}
        with self.lock:
            self.counts["requests"] += 1
            try:
                self.authenticate(method, path, headers, body)
            except Refused as exc:
                return 401, {"code": 401, "msg": str(exc)}
            try:
                items = json.loads(body)["items"]
                if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                return 400, {"code": 400, "msg": f"items: a list of 1 to {MAX_ITEMS} objects"}
            now = dt.datetime.now(dt.UTC)
            check = self.register_event if path == EVENTS_PATH else self.register_rating
            results = [check(item, now) for item in items]
        return 200, {"code": 0, "msg": "ok", "results": results}

    def _answer(self, kind, item_id, status, receipt=None, reason=None, flags=()):
        self.counts[status] += 1
        answer = {"id": item_id, "status": status}
        if receipt:
            answer["receipt"] = receipt
        if flags:
            answer["flags"] = list(flags)
        if reason:
            answer["reason"] = reason
            self.refused.append({"kind": kind, "id": item_id, "reason": reason})
        return answer

    def _receipt(self) -> str:
        self.receipts += 1
        return f"SD{self.receipts:010d}"

    def _times(self, when: dt.datetime, field: str, now: dt.datetime) -> list[str]:
        if when > now + dt.timedelta(seconds=TIMESTAMP_WINDOW_S):
            raise Refused(f"{field}: in the future")
        late = (now - when).total_seconds() > self.late_window_s
        if late and self.late == "refuse":
            raise Refused(f"{field}: reported more than {self.late_window_s} s after it")
        return ["late"] if late else []

    def _same(self, kind, item_id, kept, item, fields):
        changed = [f for f in fields if kept["payload"].get(f) != item.get(f)]
        if changed:
            reason = f"{changed[0]}: received before with different data"
            return self._answer(kind, item_id, "refused", reason=reason)
        return self._answer(kind, item_id, "duplicate", receipt=kept["receipt"])

    def register_event(self, item, now) -> dict:
        if not isinstance(item, dict):
            return self._answer("event", None, "refused", reason="item: must be an object")
        key = (item.get("projectNo"), item.get("serviceNo"))
        item_id = f"{key[0]}/{key[1]}"
        try:
            for field in ("projectNo", "serviceNo", "taskCode", "userId"):
                problem = _text(item, field)
                if problem:
                    raise Refused(problem)
            if not isinstance(item.get("deptCode"), str) or not CREDIT_CODE.fullmatch(
                item["deptCode"]
            ):
                raise Refused("deptCode: must be an 18-character unified social credit code")
            if not isinstance(item.get("areaCode"), str) or not AREA_CODE.fullmatch(
                item["areaCode"]
            ):
                raise Refused("areaCode: must be a 12-digit division code")
            handled = _local(item.get("handleTime"))
            if handled is None:
                raise Refused("handleTime: must be YYYY-MM-DD HH:MM:SS")
            kept = self.events.get(key)
            if kept is not None:
                return self._same("event", item_id, kept, item, EVENT_FIELDS)
            flags = self._times(handled, "handleTime", now)
        except Refused as exc:
            return self._answer("event", item_id, "refused", reason=str(exc))
        receipt = self._receipt()
        self.events[key] = {
            "payload": {f: item.get(f) for f in EVENT_FIELDS},
            "receipt": receipt,
            "received_at": now.isoformat(),
            "flags": flags,
        }
        self.log.append(("event", item_id))
        return self._answer("event", item_id, "accepted", receipt=receipt, flags=flags)

    def _tags_at(self, when: dt.datetime):
        chosen = None
        for start, version, codes in self.tag_versions:
            if start <= when:
                chosen = (version, codes)
        return chosen

    def register_rating(self, item, now) -> dict:
        if not isinstance(item, dict):
            return self._answer("rating", None, "refused", reason="item: must be an object")
        item_id = item.get("evaluationId")
        try:
            problem = _text(item, "evaluationId", 100)
            if problem:
                item_id = None
                raise Refused(problem)
            kept = self.ratings.get(item_id)
            if kept is not None:
                return self._same("rating", item_id, kept, item, RATING_FIELDS)
            flags = self._check_rating(item, now)
        except Refused as exc:
            return self._answer("rating", item_id, "refused", reason=str(exc))
        key = (item["projectNo"], item["serviceNo"])
        if item["assessNumber"] == 1:
            self.first_rating[key] = item_id
        receipt = self._receipt()
        self.ratings[item_id] = {
            "payload": {f: item.get(f) for f in RATING_FIELDS},
            "receipt": receipt,
            "received_at": now.isoformat(),
            "flags": flags,
        }
        self.log.append(("rating", item_id))
        return self._answer("rating", item_id, "accepted", receipt=receipt, flags=flags)

    def _check_rating(self, item, now) -> list[str]:
        for field in ("projectNo", "serviceNo", "taskCode"):
            problem = _text(item, field)
            if problem:
                raise Refused(problem)
        event = self.events.get((item["projectNo"], item["serviceNo"]))
        if event is None:
            raise Refused("projectNo/serviceNo: no service event registered for it")
        for field in ("taskCode", "deptCode", "areaCode"):
            if item.get(field) != event["payload"][field]:
                raise Refused(f"{field}: differs from the registered service event")
        pf, satisfaction, number = (
            item.get("pf"),
            item.get("satisfaction"),
            item.get("assessNumber"),
        )
        if not isinstance(pf, int) or isinstance(pf, bool) or not 1 <= pf <= 7:
            raise Refused("pf: must be 1 to 7")
        if not isinstance(satisfaction, int) or isinstance(satisfaction, bool):
            raise Refused("satisfaction: must be 1 to 5 (5 = 非常满意)")
        if not 1 <= satisfaction <= 5:
            raise Refused("satisfaction: must be 1 to 5 (5 = 非常满意)")
        if number not in (1, 2) or isinstance(number, bool):
            raise Refused("assessNumber: must be 1 (first) or 2 (appended)")
        content = item.get("evalContent", "")
        if not isinstance(content, str) or len(content) > MAX_TEXT:
            raise Refused(f"evalContent: must be text of at most {MAX_TEXT} characters")
        assessed = _local(item.get("assessTime"))
        if assessed is None:
            raise Refused("assessTime: must be YYYY-MM-DD HH:MM:SS")
        if assessed < _local(event["payload"]["handleTime"]):
            raise Refused("assessTime: before the service was handled (backdated)")
        detail = item.get("evalDetail", "")
        if not isinstance(detail, str) or len(detail) > 200:
            raise Refused("evalDetail: must be comma-separated codes")
        codes = [code for code in detail.split(",") if code]
        tags = self._tags_at(assessed.astimezone(dt.UTC))
        if codes:
            if tags is None or item.get("contentVersion") != tags[0]:
                raise Refused("contentVersion: not the tag version in force at assessTime")
            for code in codes:
                level = tags[1].get(code)
                if level is None:
                    raise Refused(f"evalDetail: {code} is not a code of version {tags[0]}")
                if level != satisfaction:
                    raise Refused(
                        f"evalDetail: {code} belongs to level {level}, not {satisfaction}"
                    )
        if satisfaction <= 2 and not codes and not content.strip():
            raise Refused("evalDetail: a 差评 needs a reason (a code or text)")
        key = (item["projectNo"], item["serviceNo"])
        if number == 1 and key in self.first_rating:
            raise Refused("assessNumber: the service event is rated already (一事一评)")
        if number == 2 and key not in self.first_rating:
            raise Refused("assessNumber: an appended rating needs a first one")
        return self._times(assessed, "assessTime", now)


def _demo_tags():
    from sync_server.tags import DEFAULT_TAGS, DEFAULT_VERSION

    since = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    return since, DEFAULT_VERSION, {code: level for level, code, _t, _m in DEFAULT_TAGS}


class _Handler(BaseHTTPRequestHandler):
    province: Province
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args):  # quiet: the judge keeps what matters
        pass

    def _send(self, status: int, answer, content_type="application/json"):
        body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (killed while waiting): what was done stays done

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            return b"x" * (MAX_BODY + 1)
        return self.rfile.read(length)

    def do_GET(self):
        if self.path == "/_sim/received":
            return self._send(200, self.province.received())
        if self.path == "/":
            return self._send(200, _overview(self.province), "text/html; charset=utf-8")
        return self._send(404, {"code": 404, "msg": "no such interface"})

    def do_POST(self):
        province = self.province
        body = self._body()
        if self.path.startswith("/_sim/"):
            return self._control(body)
        with province.lock:
            province.in_flight += 1
        try:
            return self._answer(province, body)
        finally:
            with province.lock:
                province.in_flight -= 1

    def _answer(self, province: Province, body: bytes):
        started = time.perf_counter()
        mode = province.mode
        if mode == "down":
            province.counts["faults"] += 1
            self.close_connection = True  # drop it unanswered, as a dead server would
            return None
        if mode == "slow":
            time.sleep(province.delay_s)
        if mode == "error" or (
            province.error_rate and province.random.random() < province.error_rate
        ):
            province.counts["faults"] += 1
            return self._send(500, {"code": 500, "msg": "internal error"})
        if mode == "garbage":
            province.counts["faults"] += 1
            return self._send(200, b"<html>\xff\xfe not json", "text/html")
        if mode == "refuse_no_reason":
            province.counts["faults"] += 1
            items = _items_or_empty(body)
            return self._send(
                200, {"code": 0, "results": [{"id": i, "status": "refused"} for i in items]}
            )
        status, answer = province.handle("POST", self.path, self.headers, body)
        with province.lock:
            province.handling_s.append(time.perf_counter() - started)
        return self._send(status, answer)

    def _control(self, body: bytes):
        try:
            asked = json.loads(body or b"{}")
            if self.path == "/_sim/mode":
                self.province.set_mode(
                    asked.get("mode", "ok"), asked.get("delay_s", 0), asked.get("error_rate", 0)
                )
                return self._send(200, {"mode": self.province.mode})
            if self.path == "/_sim/credentials":
                return self._send(200, self.province.issue_credential(asked.get("valid_s", 86400)))
        except (ValueError, TypeError, AttributeError) as exc:
            return self._send(400, {"code": 400, "msg": str(exc)})
        return self._send(404, {"code": 404, "msg": "no such control"})


def _overview(province: Province) -> bytes:
    """A page for the demo: what the province has received, newest first."""
    from html import escape

    got = province.received()
    kept = {("event", f"{e['payload']['projectNo']}/{e['payload']['serviceNo']}"): e
            for e in got["events"]}  # fmt: skip
    kept.update({("rating", r["payload"]["evaluationId"]): r for r in got["evaluations"]})
    rows = []
    for kind, item_id in reversed(got["log"][-50:]):
        entry = kept.get((kind, item_id), {})
        label = "服务记录" if kind == "event" else "评价"
        flags = "迟报" if "late" in entry.get("flags", []) else ""
        rows.append(
            f"<tr><td>{label}</td><td>{escape(item_id)}</td><td>{escape(entry.get('receipt', ''))}"
            f"</td><td>{escape(entry.get('received_at', '')[:19])}</td><td>{flags}</td></tr>"
        )
    counts = got["counts"]
    page = (
        "<!doctype html><meta charset='utf-8'><title>模拟省平台</title>"
        "<h1>模拟省平台（仅供测试和演示）</h1>"
        f"<p>已接收 {counts['accepted']} 条，重复 {counts['duplicate']} 条，"
        f"拒收 {counts['refused']} 条，故障应答 {counts['faults']} 次；"
        f"当前模式 {escape(province.mode)}</p>"
        "<table border=1 cellpadding=4><tr><th>类型</th><th>编号</th><th>回执号</th>"
        "<th>接收时间 (UTC)</th><th>标注</th></tr>" + "".join(rows) + "</table>"
    )
    return page.encode()


def _items_or_empty(body: bytes) -> list:
    try:
        items = json.loads(body)["items"]
        return [
            i.get("evaluationId") or f"{i.get('projectNo')}/{i.get('serviceNo')}" for i in items
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


def serve(province: Province, host="127.0.0.1", port=0):
    """Serve `province` in a daemon thread; returns (server, url)."""
    handler = type("Handler", (_Handler,), {"province": province})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    # a short shutdown poll: tests start and stop a province for each case
    threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="sim-province",
        daemon=True,
    ).start()
    return server, f"http://{host}:{server.server_port}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="a simulated provincial platform (tests, demo)")
    add_arguments(parser)
    return parser


def add_arguments(parser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument(
        "--credential-file", help="write a credential the collector can use here (JSON)"
    )
    parser.add_argument("--late-window", type=float, default=300, help="seconds (default 300)")
    parser.add_argument("--late", choices=("flag", "refuse"), default="flag")
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds, in --mode slow")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests → 500")


def load_or_issue(province: Province, path: str, url: str) -> dict:
    """The credential in `path` is known again (a restarted province keeps
    its district's credential); without the file a new one is issued there."""
    try:
        with open(path, encoding="utf-8") as source:
            credential = json.load(source)
        expires = dt.datetime.strptime(credential["expires_at"], "%Y-%m-%dT%H:%M:%SZ")
        province.credentials[credential["app_id"]] = {
            "public_key": credential["public_key"],
            "expires_at": expires.replace(tzinfo=dt.UTC),
        }
    except FileNotFoundError:
        credential = province.issue_credential()
    credential["url"] = url
    with open(path, "w", encoding="utf-8") as out:
        json.dump(credential, out)
    return credential


def run(args) -> int:
    province = Province(late_window_s=args.late_window, late=args.late)
    province.set_mode(args.mode, args.delay, args.error_rate)
    server, url = serve(province, args.host, args.port)
    if args.credential_file:
        load_or_issue(province, args.credential_file, url)
    print(f"simulated province (tests and demo only): {url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(run(build_parser().parse_args()))
