"""A simulated SMS gateway, for tests and the demo only: no message leaves this machine.

It speaks the collector's gateway seam (sync_server/sms_gateways.py) over
real HTTP:

- `POST /send {"to", "text"}` (the collector sending) -> `{"id"}`; the
  message is kept in the gateway's outbox;
- `POST /reply {"from", "text"}` (a test or a person playing the citizen)
  -> the gateway signs the message with the inbound secret and posts it to
  the collector's `/sms/inbound`; answers with the collector's answer;
- `GET /messages?to=<phone>` -> the messages sent to that phone, oldest first;
- `GET /stats` -> how many messages it sent, relayed and refused.

Run it alone with `python -m simulators.sms_gateway --collector URL --secret S`
or through `hcp sim sms`.
"""

from __future__ import annotations

import argparse
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from sync_server.sms_gateways import signature

MAX_BODY = 16_384


class SmsGateway:
    """The gateway's state and its HTTP server (start/stop)."""

    def __init__(self, collector_url: str, secret: str, host: str = "127.0.0.1", port: int = 0):
        self.collector_url = collector_url.rstrip("/")
        self.secret = secret
        self.outbox: list[dict] = []
        self.counts = {"sent": 0, "relayed": 0, "refused": 0}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SmsGateway:
        # a short shutdown poll: tests start and stop a gateway for each case
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.thread is not None:
            self.thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *_exc):
        self.stop()

    def take(self, to: str, text: str) -> str:
        with self.lock:
            self.outbox.append({"id": str(len(self.outbox) + 1), "to": to, "text": text})
            self.counts["sent"] += 1
            return self.outbox[-1]["id"]

    def messages(self, to: str) -> list[dict]:
        with self.lock:
            return [m for m in self.outbox if m["to"] == to]

    def relay(self, sender: str, text: str) -> tuple[int, dict]:
        """Post a citizen's reply to the collector as a provider would."""
        body = json.dumps({"from": sender, "text": text}, ensure_ascii=False).encode()
        request = urllib.request.Request(
            self.collector_url + "/sms/inbound",
            data=body,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "X-HCP-Signature": signature(self.secret, body),
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status, found = answer.status, json.loads(answer.read().decode())
        except urllib.error.HTTPError as exc:
            status, found = exc.code, json.loads(exc.read().decode() or "{}")
        with self.lock:
            self.counts["relayed" if status == 200 else "refused"] += 1
        return status, found


def _handler(gateway: SmsGateway):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args):  # quiet: tests read the counts instead
            pass

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict | None:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                return None
            try:
                found = json.loads(self.rfile.read(length).decode())
            except (UnicodeDecodeError, ValueError):
                return None
            return found if isinstance(found, dict) else None

        def do_POST(self):  # noqa: N802 (the http.server name)
            body = self._body()
            path = urlsplit(self.path).path
            if body is None:
                return self._answer(400, {"error": "body: a JSON object of at most 16384 bytes"})
            if path == "/send":
                to, text = body.get("to"), body.get("text")
                if not isinstance(to, str) or not isinstance(text, str) or not to:
                    return self._answer(400, {"error": "to, text: strings required"})
                return self._answer(200, {"id": gateway.take(to, text)})
            if path == "/reply":
                sender, text = body.get("from"), body.get("text")
                if not isinstance(sender, str) or not isinstance(text, str):
                    return self._answer(400, {"error": "from, text: strings required"})
                status, found = gateway.relay(sender, text)
                return self._answer(status, found)
            return self._answer(404, {"error": "not found"})

        def do_GET(self):  # noqa: N802
            parts = urlsplit(self.path)
            if parts.path == "/messages":
                to = parse_qs(parts.query).get("to", [""])[0]
                return self._answer(200, {"messages": gateway.messages(to)})
            if parts.path == "/stats":
                with gateway.lock:
                    return self._answer(200, dict(gateway.counts))
            return self._answer(404, {"error": "not found"})

    return Handler


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collector", required=True, help="the collector's web address")
    parser.add_argument("--secret", required=True, help="HCP_SMS_INBOUND_SECRET of the collector")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args(argv)
    gateway = SmsGateway(args.collector, args.secret, args.host, args.port)
    print(f"simulated SMS gateway (tests and demo only) at {gateway.url}", flush=True)
    try:
        gateway.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        gateway.server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
