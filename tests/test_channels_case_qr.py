"""The case QR on the window PC's screen: `hcp window` registers the event
with a live collector (POST /event), then serves its signed case QR as SVG
(GET /case-qr, hcp/channels_case_qr.py). The SVG is drawn to pixels (SDL's
SVG loader) and decoded with zxing-cpp to the collector's case QR address,
which opens the rating page; bad requests get their exact message.

The window's handler here is hcp.window's with the one line that routes
GET /case-qr to hcp/channels_case_qr.py.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import urllib.error
import urllib.request

import pytest
import serial

from hcp import window
from tests.harness import shared_worlds
from tests.harness.shared_worlds import serve_web
from tests.test_citizen import ITEM, build, utc

# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres

CASE = "LZ2026112740001"


@pytest.fixture
def live(engine_app):
    engine_app.tokens = build(engine_app)
    server, thread = serve_web(engine_app, "127.0.0.1", 0)
    engine_app.base = f"http://127.0.0.1:{server.server_port}"
    yield engine_app
    server.shutdown()
    thread.join(5)


@pytest.fixture
def window_pc(live):
    """`hcp window`'s HTTP service (its keypad a serial loopback) linked to
    the collector with the business system's token; yields its base URL."""
    import threading

    port = serial.serial_for_url("loop://", timeout=0.05)
    link = window.CollectorLink(live.base, live.tokens["clerk_ws"], "A01")
    server, link_port = window.serve(port, 0, collector=link)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": shared_worlds.SHUTDOWN_POLL_S},
        daemon=True,
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", server
    server.shutdown()
    server.server_close()
    thread.join(5)
    link_port.close()
    port.close()


def call(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers.get("Content-Type"), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), exc.read()


def decode_svg(data: bytes) -> list[str]:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame
    import zxingcpp

    image = pygame.image.load(io.BytesIO(data), "code.svg")
    width, height = image.get_size()
    red = pygame.image.tobytes(image, "RGB")[0::3]
    cells = memoryview(red).cast("B", (height, width))
    return [code.text for code in zxingcpp.read_barcodes(cells)]


def test_the_window_pc_shows_the_signed_case_qr_of_the_event_it_registered(live, window_pc):
    base, _server = window_pc
    event = {
        "case_no": CASE,
        "service_no": "1",
        "item_code": ITEM,
        "unit_id": "hall-ws",
        "staff_id": "S1001",
        "handled_at": utc(dt.datetime.now(dt.UTC)),
    }
    status, _type, body = call(base + "/event", event)
    assert status == 201, body
    rate_until = json.loads(body)["rate_until"]
    status, kind, svg = call(f"{base}/case-qr?case_no={CASE}&service_no=1")
    assert (status, kind) == (200, "image/svg+xml; charset=utf-8")
    text = svg.decode()
    assert f"扫码评价 办件号 {CASE}" in text
    day = dt.date.fromisoformat(rate_until)
    assert f"{day.month}月{day.day}日前有效" in text
    (url,) = decode_svg(svg)
    assert url.startswith(live.base + "/r/c/") and f"-{day:%Y%m%d}-" in url
    page = urllib.request.urlopen(url, timeout=10)  # the citizen's phone opens it
    assert page.status == 200 and "<title>服务评价 · " in page.read().decode()
    # service_no defaults to 1
    assert decode_svg(call(f"{base}/case-qr?case_no={CASE}")[2]) == [url]


BAD = "1..64 characters of A-Z a-z 0-9 . _ -"
REFUSED = [
    ("case_no=LZ2026112749999", 404, "not found"),
    ("case_no=%3Cscript%3E", 400, "case_no: " + BAD),
    ("case_no=" + "9" * 65, 400, "case_no: " + BAD),
    ("", 400, "case_no: " + BAD),
    (f"case_no={CASE}&case_no=X1", 400, "case_no: " + BAD),
    (f"case_no={CASE}&service_no=a%20b", 400, "service_no: " + BAD),
]


def test_a_bad_or_unknown_case_gets_its_message(window_pc):
    base, _server = window_pc
    for query, status, error in REFUSED:
        answer = call(f"{base}/case-qr?{query}")
        assert (answer[0], json.loads(answer[2])) == (status, {"error": error}), query


def test_without_a_collector_or_when_it_is_down(window_pc):
    base, server = window_pc
    link = server.collector
    server.collector = None
    answer = call(f"{base}/case-qr?case_no={CASE}")
    assert (answer[0], json.loads(answer[2])) == (
        503,
        {"error": "case-qr: no collector configured (hcp window --collector --token-file)"},
    )
    server.collector = window.CollectorLink("http://127.0.0.1:9", link.token, "A01", timeout=2)
    status, _type, body = call(f"{base}/case-qr?case_no={CASE}")
    assert status == 502
    assert json.loads(body)["error"].startswith("collector: unreachable (")
