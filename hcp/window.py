"""`hcp window`: the window PC's end of the keypad serial link (docs/protocol.md §4).

Opens the keypad's serial port and serves a small HTTP API on 127.0.0.1 for
the window's business system:

    POST /start   {case_no, service_no, item_code, staff_id, org_id,
                   handled_at, timeout_s, attempt, follows}
                  -> waits for the citizen; {"result": "rated", "record_id"}
                     or {"result": "timeout"} (never a level: staff must not
                     learn which key was pressed)
    POST /cancel, /pause, /resume, /signin {name, staff_no}, /signout
    GET  /status  -> the keypad's status ack and this link's counters
    POST /event   {case_no, service_no, item_code, unit_id, window_id,
                   staff_id, handled_at, phone} -> registers the service event
                  with the collector (--collector, --token-file; window_id
                  defaults to --window) and answers what the collector
                  answered (docs/service-events.md)

With --collector, --token-file and --window, each /pause and /resume the
keypad acknowledged is reported to the collector
(POST /api/v1/windows/<window>/pauses, with the time of the keypad's ack),
from a small queue sent again until the collector answers: the gaming rule
"rated while the window was paused" reads them (docs/reporting-upward.md).

A command that gets no answer is sent again (the same frame, the same id);
the keypad answers a repeat without acting on it twice.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict, deque
from http.server import ThreadingHTTPServer

from hcp import channels_case_qr
from hcp.local_api import JSONHandler
from protocols import serial as proto

log = logging.getLogger(__name__)

REPLY_TIMEOUT_S = 0.5  # wait this long for an ack before sending again
TRIES = 3
KEEP_OUTCOMES = 32  # results/timeouts kept for cases nobody waits for yet
KEEP_SEEN = 64  # event ids remembered to drop repeats
KEEP_PAUSE_REPORTS = 256  # pause/resume reports kept while the collector is away


class NoAnswer(Exception):
    """The keypad did not answer a command after every try."""


class Refused(Exception):
    """The keypad answered nak; str() is its reason."""


class WindowPort:
    """Commands out, replies and events in, over one serial port object
    (anything with read(n), write(b) and a short read timeout)."""

    def __init__(self, port, reply_timeout=REPLY_TIMEOUT_S, tries=TRIES):
        self.port = port
        self.reply_timeout = reply_timeout
        self.tries = tries
        self.decoder = proto.FrameDecoder()
        self._cond = threading.Condition()
        self._command_lock = threading.Lock()  # one command in flight at a time
        self._write_lock = threading.Lock()
        self._id = 0
        self._replies: dict[int, dict] = {}
        self._outcomes: OrderedDict[str, dict] = OrderedDict()
        self._seen: deque[tuple[int, bytes]] = deque(maxlen=KEEP_SEEN)
        self._cancels = 0  # cancel/pause commands acked so far
        self.errors: deque[dict] = deque(maxlen=16)  # the keypad's error events
        self.unasked: deque[str] = deque(maxlen=16)  # record ids rated with no case
        self.counters = {
            "commands": 0,
            "repeats": 0,
            "no_answer": 0,
            "bad_frames": 0,
            "port_errors": 0,
        }
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name="window-port", daemon=True)
        self._reader.start()

    def close(self):
        self._stop.set()
        self._reader.join(timeout=2)

    # --- input ---
    def _read_loop(self):
        while not self._stop.is_set():
            try:
                data = self.port.read(max(1, getattr(self.port, "in_waiting", 0) or 0))
                for item in self.decoder.feed(data or b""):
                    if isinstance(item, proto.FrameError):
                        self._bad(item)
                    else:
                        self._handle(item)
            except Exception as exc:  # e.g. the USB adapter unplugged: reopen, keep trying
                log.warning("serial port failed: %s", exc)
                self.counters["port_errors"] += 1
                time.sleep(0.5)
                try:
                    self.port.close()
                    self.port.open()
                except Exception as again:
                    log.warning("serial port does not reopen: %s", again)

    def _write(self, frame):
        with self._write_lock:
            self.port.write(frame)
            flush = getattr(self.port, "flush", None)
            if flush:
                flush()

    def _bad(self, err):
        self.counters["bad_frames"] += 1
        log.warning("bad frame from the keypad: %s", err)
        if err.ref is not None:
            self._write(proto.encode_frame(proto.nak(err.ref, str(err)[:64])))

    def _handle(self, msg):
        t = msg["t"]
        if t in proto.REPLIES:
            with self._cond:
                self._replies[msg["ref"]] = msg
                self._cond.notify_all()
            return
        if t not in proto.EVENTS:
            self._write(proto.encode_frame(proto.nak(msg["id"], "not an event: " + t)))
            return
        self._write(proto.encode_frame(proto.ack(msg["id"])))
        key = (msg["id"], json.dumps(msg, sort_keys=True).encode())
        if key in self._seen:
            return  # our ack was lost and the keypad sent it again
        self._seen.append(key)
        if t == "error":
            log.warning("keypad error %s: %s", msg["code"], msg["text"])
            self.errors.append({"code": msg["code"], "text": msg["text"]})
            return
        case_no = msg.get("case_no")
        if case_no is None:
            self.unasked.append(msg["record_id"])
            return
        with self._cond:
            self._outcomes[case_no] = msg
            while len(self._outcomes) > KEEP_OUTCOMES:
                self._outcomes.popitem(last=False)
            self._cond.notify_all()

    # --- commands ---
    def command(self, t, **fields):
        """Send a command; return the keypad's ack. Refused on a nak, NoAnswer
        when every try went unanswered, SerialError for a bad message."""
        with self._command_lock:
            self._id = proto.next_id(self._id)
            ref = self._id
            frame = proto.encode_frame(proto.message(t, ref, **fields))
            self.counters["commands"] += 1
            for attempt in range(self.tries):
                if attempt:
                    self.counters["repeats"] += 1
                try:
                    self._write(frame)
                except OSError as exc:  # pyserial's SerialException is an OSError
                    self.counters["port_errors"] += 1
                    log.warning("serial write failed: %s", exc)
                deadline = time.monotonic() + self.reply_timeout
                with self._cond:
                    while ref not in self._replies:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                    reply = self._replies.pop(ref, None)
                    self._replies.clear()  # late answers to earlier commands
                    if reply is not None and t in ("cancel", "pause") and reply["t"] == "ack":
                        self._cancels += 1
                        self._cond.notify_all()
                if reply is not None:
                    if reply["t"] == "nak":
                        raise Refused(reply["reason"])
                    return reply
            self.counters["no_answer"] += 1
            raise NoAnswer(t + ": no answer from the keypad after " + str(self.tries) + " tries")

    def start(self, case, wait_s, after_cancel_s):
        """Start a case and wait for its outcome: the result or timeout event,
        or None after wait_s. After a cancel or pause the wait is cut to
        after_cancel_s (a rating already made still sends its result)."""
        case_no = case["case_no"]
        with self._cond:
            self._outcomes.pop(case_no, None)
            cancels = self._cancels
        self.command("start", **case)
        deadline = time.monotonic() + wait_s
        cut = False
        with self._cond:
            while case_no not in self._outcomes:
                if not cut and self._cancels != cancels:
                    cut = True
                    deadline = min(deadline, time.monotonic() + after_cancel_s)
                left = deadline - time.monotonic()
                if left <= 0:
                    return {"t": "cancelled"} if cut else None
                self._cond.wait(left)
            return self._outcomes[case_no]  # kept for a second waiter on the same case


class CollectorLink:
    """The collector's service event API, with the business system's token.

    Registration is idempotent, so a business system that got no answer
    (502) sends the same event again; nothing is queued here."""

    PATH = "/api/v1/service-events"

    def __init__(self, url: str, token: str, window_id: str | None = None, timeout: float = 10):
        self.url = url.rstrip("/") + self.PATH
        self.token = token
        self.window_id = window_id
        self.timeout = timeout

    def register(self, event: dict) -> tuple[int, dict]:
        """(status, answer) of the collector for one event."""
        if self.window_id is not None:
            event = {"window_id": self.window_id, **event}
        return self.call(self.PATH, json.dumps(event, ensure_ascii=False).encode())

    def call(self, path: str, data: bytes | None = None) -> tuple[int, dict]:
        """(status, answer) of the collector's API at `path` (with its query),
        POSTing `data` as JSON when given; 502 when the collector is unreachable
        or answers without JSON."""
        headers = {"Authorization": "Bearer " + self.token}
        if data is not None:
            headers["Content-Type"] = "application/json"
        base = self.url[: -len(self.PATH)]
        request = urllib.request.Request(base + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return answer.status, json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read() or b"{}")
            except ValueError:
                body = {"error": "collector: answered " + str(exc.code) + " without JSON"}
            return exc.code, body
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return 502, {"error": "collector: unreachable (" + str(reason)[:120] + ")"}


class PauseReporter:
    """Acknowledged pauses and resumes, reported to the collector in order by
    a thread of their own; kept and sent again while the collector does not
    answer (up to KEEP_PAUSE_REPORTS, the oldest dropped after that)."""

    def __init__(self, url: str, token: str, window_id: str, timeout: float = 10, retry_s=2.0):
        from urllib.parse import quote

        self.url = url.rstrip("/") + "/api/v1/windows/" + quote(window_id, safe="") + "/pauses"
        self.token = token
        self.timeout = timeout
        self.retry_s = retry_s
        self._queue: deque[dict] = deque()
        self._cond = threading.Condition()
        self.counters = {"sent": 0, "refused": 0, "dropped": 0, "failures": 0}
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="window-pauses", daemon=True)
        self._thread.start()

    def report(self, action: str, at: float | None = None) -> None:
        moment = time.gmtime(time.time() if at is None else at)
        item = {"action": action, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", moment)}
        with self._cond:
            self._queue.append(item)
            while len(self._queue) > KEEP_PAUSE_REPORTS:
                self._queue.popleft()
                self.counters["dropped"] += 1
            self._cond.notify_all()

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._queue)

    def status(self) -> dict:
        return {**self.counters, "waiting": self.waiting, "last_error": self.last_error}

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=2)

    def _post(self, item: dict) -> int:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(item).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + self.token},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return answer.status
        except urllib.error.HTTPError as exc:
            try:
                self.last_error = json.loads(exc.read() or b"{}").get("error") or str(exc.code)
            except (ValueError, AttributeError):
                self.last_error = "collector: answered " + str(exc.code)
            return exc.code
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.last_error = (
                "collector: unreachable (" + str(getattr(exc, "reason", exc))[:120] + ")"
            )
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait(1.0)
                if self._stop.is_set():
                    return
                item = self._queue[0]
            try:
                status = self._post(item)
            except Exception as exc:  # never end the thread: try again later
                self.last_error = repr(exc)[:200]
                status = 0
            if status == 0 or status >= 500 or status in (401, 429):
                # not now (down, overloaded, a token being rotated): the same report again
                self.counters["failures"] += 1
                log.warning(
                    "pause report not taken (%s): again in %.0f s", self.last_error, self.retry_s
                )
                self._stop.wait(self.retry_s)
                continue
            with self._cond:
                if self._queue and self._queue[0] is item:
                    self._queue.popleft()
            if status < 300:
                self.counters["sent"] += 1
                self.last_error = None
            else:  # refused for good (an unknown window, a resume with no pause): logged
                self.counters["refused"] += 1
                log.warning("pause report refused by the collector: %s", self.last_error)


# --- the HTTP API ---

_SIMPLE = ("cancel", "pause", "resume", "signout")


class _Handler(JSONHandler):
    server_version = "hcp-window"

    def do_GET(self):
        if channels_case_qr.wants(self.path):  # the case QR for the citizen's screen
            channels_case_qr.answer(self, self.server.collector)
            return
        if self.path != "/status":
            self._answer(404, {"error": "no such endpoint: GET " + self.path})
            return
        window = self.server.window
        try:
            reply = window.command("status")
        except (NoAnswer, Refused) as exc:
            self._answer(504, {"error": str(exc), "link": window.counters})
            return
        data = {k: v for k, v in reply.items() if k not in ("v", "t", "ref")}
        data["link"] = dict(window.counters)
        data["keypad_errors"] = list(window.errors)
        if self.server.pauses is not None:
            data["pause_reports"] = self.server.pauses.status()
        self._answer(200, data)

    def do_POST(self):
        name = self.path.lstrip("/")
        if name == "event":
            self._event()
            return
        if name not in ("start", "signin", *_SIMPLE):
            self._answer(404, {"error": "no such endpoint: POST " + self.path})
            return
        body = self._body()
        if body is None:
            return
        if name in _SIMPLE and body:
            self._answer(400, {"error": name + ": takes no fields, got " + sorted(body)[0]})
            return
        for key in ("v", "t", "id", "ref"):
            if key in body:
                self._answer(400, {"error": name + "." + key + ": set by the link, not allowed"})
                return
        try:
            proto.validate(proto.message(name, 1, **body))
        except proto.SerialError as exc:
            self._answer(400, {"error": str(exc)})
            return
        window = self.server.window
        try:
            if name == "start":
                self._start(window, body)
                return
            window.command(name, **body)
            if name in ("pause", "resume") and self.server.pauses is not None:
                self.server.pauses.report(name)  # the keypad acknowledged it now
        except Refused as exc:
            self._answer(409, {"error": "refused by the keypad: " + str(exc)})
            return
        except NoAnswer as exc:
            self._answer(504, {"error": str(exc)})
            return
        self._answer(200, {"ok": True})

    def _event(self):
        collector = self.server.collector
        if collector is None:
            self._answer(
                503,
                {"error": "event: no collector configured (hcp window --collector --token-file)"},
            )
            return
        body = self._body()
        if body is None:
            return
        status, answer = collector.register(body)
        self._answer(status, answer)

    def _start(self, window, case):
        wait = case.get("timeout_s", 60) + self.server.extra_wait
        outcome = window.start(case, wait, self.server.extra_wait)
        answer = {"case_no": case["case_no"]}
        if outcome is None:
            answer["result"] = "no_result"
            answer["error"] = "no result or timeout from the keypad in " + str(wait) + " s"
            self._answer(504, answer)
            return
        if outcome["t"] == "result":
            answer["result"] = "rated"
            answer["record_id"] = outcome["record_id"]
        else:
            answer["result"] = outcome["t"]  # "timeout" or "cancelled"
        self._answer(200, answer)


def serve(port, http_port, extra_wait=40, host="127.0.0.1", collector=None, pauses=None):
    """A WindowPort on port and its HTTP server (not yet serving); `collector`
    a CollectorLink for POST /event, or None; `pauses` a PauseReporter, or None."""
    window = WindowPort(port)
    server = ThreadingHTTPServer((host, http_port), _Handler)
    server.daemon_threads = True
    server.window = window
    server.extra_wait = extra_wait
    server.collector = collector
    server.pauses = pauses
    return server, window


def register(commands) -> None:
    parser = commands.add_parser(
        "window", help="the window PC's link to its keypad, with a local HTTP API"
    )
    parser.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0 or COM3")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--http-port", type=int, default=8765, help="HTTP on 127.0.0.1")
    parser.add_argument(
        "--extra-wait",
        type=int,
        default=40,
        help="seconds a /start waits beyond its timeout_s (at least the keypad's confirm_ms)",
    )
    parser.add_argument(
        "--collector",
        help="the collector's URL, e.g. https://hcp.example.gov.cn: POST /event registers "
        "service events there",
    )
    parser.add_argument(
        "--token-file",
        help="a file holding the business system's API token (role clerk) for --collector",
    )
    parser.add_argument(
        "--window",
        help="this window's id: the default window_id of /event; with --collector, pauses "
        "and resumes are reported for it",
    )
    parser.set_defaults(handler=run)


def collector_link(args) -> CollectorLink | None:
    """The CollectorLink the options ask for; ValueError names a missing option."""
    if args.collector is None and args.token_file is None:
        return None
    if args.collector is None or args.token_file is None:
        raise ValueError("--collector and --token-file: give both or neither")
    with open(args.token_file, encoding="utf-8") as token_file:
        token = token_file.read().strip()
    if not token:
        raise ValueError("--token-file: " + args.token_file + " is empty")
    return CollectorLink(args.collector, token, args.window)


def run(args) -> int:
    import serial

    try:
        collector = collector_link(args)
    except (ValueError, OSError) as exc:
        print("error: " + str(exc), file=sys.stderr)
        return 1
    pauses = None
    if collector is not None and args.window:
        pauses = PauseReporter(
            collector.url[: -len(CollectorLink.PATH)], collector.token, args.window
        )
    port = serial.serial_for_url(args.port, baudrate=args.baud, timeout=0.05)
    server, window = serve(
        port, args.http_port, args.extra_wait, collector=collector, pauses=pauses
    )
    print(f"hcp window: {args.port} at {args.baud} baud; HTTP on http://127.0.0.1:{args.http_port}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        window.close()
        port.close()
        if pauses is not None:
            pauses.close()
    return 0
