"""The small JSON API a device's PC offers on 127.0.0.1: the window PC's
(`hcp window`) and the hall kiosk's (`python -m kiosk`) share this base.

Every answer is JSON (`{"error": "..."}` naming the field or the body when
refused); a body is one JSON object of at most MAX_BODY bytes.
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler

log = logging.getLogger(__name__)

MAX_BODY = 4096  # bytes of an HTTP request body


class JSONHandler(BaseHTTPRequestHandler):
    """A request handler with JSON answers and bounded JSON bodies."""

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        log.info("%s " + format, self.address_string(), *args)

    def _answer(self, code, body):
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        """The request's JSON object ({} when empty); None after answering 4xx."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._answer(413 if length > MAX_BODY else 400, {"error": "body: bad length"})
            return None
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: [[[[...]]]] within 4 KB
            self._answer(400, {"error": "body: not valid JSON"})
            return None
        if not isinstance(body, dict):
            self._answer(400, {"error": "body: must be a JSON object"})
            return None
        return body
