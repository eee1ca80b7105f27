"""The case QR on the window PC's screen: `GET /case-qr` of `hcp window`.

A citizen rates a service event on a phone by scanning its dynamic case QR
(docs/citizen-channels.md). The code carries a token the collector signs with
its own key, so only the collector can make it: the window PC, which already
registers the event there (POST /event, with the business system's token),
asks the collector for it (`GET /api/v1/case-qr`) and serves it to its own
screen, the one turned to the citizen:

    GET /case-qr?case_no=<case number>&service_no=<service number, default 1>
        -> 200 image/svg+xml: the code, with the case number and the last
           day it can be rated written under it in Chinese
        -> 400 {"error": "case_no: ..."} a malformed number (not sent on)
        -> 404 / 4xx: what the collector answered (an unknown event, or one
           of another unit: {"error": "not found"})
        -> 502 the collector unreachable; 503 no collector configured

The SVG is drawn here from the URL the collector gave (sync_server.citizen_qr),
so it needs no image library and scales to any screen.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request

from markupsafe import escape

from sync_server.citizen_qr import code_group

PATH = "/case-qr"
API = "/api/v1/case-qr"
CODE = re.compile(r"[A-Za-z0-9._-]{1,64}")  # the collector's org.CODE_PATTERN
SIZE = 300  # the code, in pixels; the caption below it
CAPTION = 64


def wants(path: str) -> bool:
    """Whether a GET to `path` is this module's."""
    return urllib.parse.urlsplit(path).path == PATH


def fetch(link, case_no: str, service_no: str) -> tuple[int, dict]:
    """(status, answer) of the collector's case QR API for one event; `link`
    an hcp.window.CollectorLink (its URL and token)."""
    query = urllib.parse.urlencode({"case_no": case_no, "service_no": service_no})
    return link.call(API + "?" + query)


def svg(answer: dict) -> str:
    """The code of `answer` (the collector's case QR) with its caption."""
    last = answer["last_day"].split("-")
    lines = (
        "扫码评价 办件号 " + answer["case_no"],
        f"{int(last[1])}月{int(last[2])}日前有效",
    )
    text = "".join(
        f'<text x="{SIZE // 2}" y="{SIZE + 26 + 28 * n}" text-anchor="middle" '
        f'font-size="20" font-family="sans-serif">{escape(line)}</text>'
        for n, line in enumerate(lines)
    )
    height = SIZE + CAPTION
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{height}" '
        f'viewBox="0 0 {SIZE} {height}"><rect width="{SIZE}" height="{height}" fill="#fff"/>'
        f"{code_group(answer['url'], 0, 0, SIZE)}{text}</svg>"
    )


def answer(handler, link) -> None:
    """Answer a `GET /case-qr` on `handler` (hcp.window's request handler,
    with its JSON `_answer`) through the CollectorLink `link` (or None)."""
    if link is None:
        handler._answer(
            503, {"error": "case-qr: no collector configured (hcp window --collector --token-file)"}
        )
        return
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(handler.path).query)
    fields = {"case_no": query.get("case_no", [""]), "service_no": query.get("service_no", ["1"])}
    for name, values in fields.items():
        if len(values) != 1 or not CODE.fullmatch(values[0]):
            handler._answer(400, {"error": f"{name}: 1..64 characters of A-Z a-z 0-9 . _ -"})
            return
    status, body = fetch(link, fields["case_no"][0], fields["service_no"][0])
    if status != 200:
        handler._answer(status, body)
        return
    try:
        data = svg(body).encode()
    except Exception:  # whatever the collector sent, the window PC answers
        handler._answer(502, {"error": "collector: the case QR answer is not one"})
        return
    handler.send_response(200)
    handler.send_header("Content-Type", "image/svg+xml; charset=utf-8")
    handler.send_header("Content-Length", str(len(data)))
    handler.send_header("Cache-Control", "no-store")
    handler.end_headers()
    handler.wfile.write(data)
