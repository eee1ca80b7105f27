"""`hcp sim sms`: the simulated SMS gateway (tests and the demo only), and the
citizen channels' part of `hcp demo`.

    hcp sim sms --collector http://127.0.0.1:8000 --secret S [--port 8025]

runs simulators/sms_gateway.py until Ctrl-C. The collector must run with
HCP_SMS_GATEWAY_URL=<the gateway's address> and HCP_SMS_INBOUND_SECRET=S.
Play the citizen with

    curl -d '{"from":"13800000001","text":"1"}' http://127.0.0.1:8025/reply
    curl 'http://127.0.0.1:8025/messages?to=13800000001'

`demo_channels(stack)` is what `hcp demo` runs once its service events are
registered: it starts the simulated gateway beside the stack's web app and,
over real HTTP as a phone would, makes one rating on each citizen channel
(window QR, case QR, web portal, SMS, paper card), then returns the lines
that tell a person which addresses to open on a phone to rate themselves.
"""

from __future__ import annotations

import datetime as dt
import http.cookiejar
import json
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request

DEMO_PHONES = ("13800000001", "13800000002")
CSRF = re.compile(r'name="csrf_token"[^>]*?value="([^"]+)"')
FORM_TOKEN = re.compile(r'name="form_token" value="([^"]*)"')
VERSION = re.compile(r'name="content_version" value="([^"]*)"')


def register(runs) -> None:
    """Add `sms` to the runs of `hcp sim`."""
    p = runs.add_parser("sms", help="the simulated SMS gateway (tests and demo only)")
    p.add_argument("--collector", required=True, help="the collector's web address")
    p.add_argument("--secret", required=True, help="the collector's HCP_SMS_INBOUND_SECRET")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8025)
    p.set_defaults(handler=_run)


def _run(args) -> int:
    from simulators import sms_gateway

    return sms_gateway.main(
        [
            "--collector", args.collector, "--secret", args.secret,
            "--host", args.host, "--port", str(args.port),
        ]
    )  # fmt: skip


class Browser:
    """A phone's browser, as far as plain forms go: cookies and CSRF tokens."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        self.opener.addheaders = [("User-Agent", "hcp-demo (Mobile)")]

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=10) as answer:
            return answer.read().decode()

    def post(self, path: str, fields: dict) -> tuple[str, str]:
        data = urllib.parse.urlencode(fields, doseq=True).encode()
        try:
            with self.opener.open(self.base + path, data=data, timeout=10) as answer:
                return answer.geturl(), answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.geturl(), exc.read().decode()

    def rate(self, path: str, stars: int, tags=(), **first) -> str:
        token = CSRF.search(self.get(path)).group(1)
        _url, page = self.post(path, {"csrf_token": token, "stars": stars, **first})
        found = FORM_TOKEN.search(page)
        if found is None:
            return page
        fields = {
            "csrf_token": token,
            "stars": stars,
            "step": "2",
            "form_token": found.group(1),
            "content_version": VERSION.search(page).group(1),
            "tags": list(tags),
            **first,
        }
        return self.post(path, fields)[1]


def _notice(page: str) -> str:
    found = re.search(r'id="(?:notice|error|saved)"[^>]*>([^<]*)<', page)
    return found.group(1).strip() if found else "?"


def demo_channels(stack, admin_password: str) -> list[str]:
    """One rating on each citizen channel of the running demo, and what to open."""
    from simulators.sms_gateway import SmsGateway
    from sync_server import citizen_tokens, phones, service_events, sms
    from sync_server import sms_gateways as gateways
    from sync_server.citizen_pages import event_link

    app, engine, base = stack.app, stack.engine, stack.web_url
    secret = secrets.token_hex(16)
    gateway = SmsGateway(base, secret).start()
    stack.sms_gateway = gateway  # stopped with the process (a daemon thread)
    app.config.update(HCP_SMS_INBOUND_SECRET=secret, HCP_SMS_GATEWAY_URL=gateway.url)
    lines = [f"  短信网关 SMS gateway (simulated): {gateway.url}"]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    stamp = now.strftime("%Y%m%d%H%M%S")
    with app.test_request_context("/", base_url=base):
        events = service_events.listing(engine, None, per_page=500)["items"]
        open_events = [e for e in events if not e["rating_id"] and e.get("window_id")]
        if len(open_events) < 4:
            return lines + ["  (fewer than 4 service events to rate: no channel demo)"]
        made = []
        for n, phone in enumerate(DEMO_PHONES, start=1):
            first = open_events[0]
            body = {
                "case_no": f"DEMO-{stamp}-SMS-{n}",
                "service_no": "1",
                "item_code": first["item_code"],
                "unit_id": first["unit_id"],
                "window_id": first["window_id"],
                "handled_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "phone": phone,
            }
            if first.get("staff_id"):  # the province needs who handled it
                body["staff_id"] = first["staff_id"]
            made.append(service_events.register_one(engine, body, "demo", "hcp-demo", now=now)[0])
        sms.deliver(engine, gateways.from_config(app.config), phones.app_key())
        links = [event_link(e, "qr_case", external=True) for e in open_events[:3]]
        receipt = citizen_tokens.receipt_code(
            citizen_tokens.app_key(), open_events[3]["case_no"], open_events[3]["service_no"]
        )
    phone = Browser(base)
    window = open_events[0]["window_id"]
    results = [
        ("窗口码 window QR", phone.rate(f"/r/w/{window}", 5, case_no=open_events[0]["case_no"])),
        ("办件码 case QR", phone.rate(links[1].removeprefix(base), 4)),
    ]
    token = CSRF.search(phone.get("/rate")).group(1)
    url, page = phone.post(
        "/rate", {"csrf_token": token, "case_no": open_events[3]["case_no"], "check": receipt}
    )
    results.append(("网站 web portal", phone.rate(urllib.parse.urlsplit(url).path, 3)))
    status, answer = gateway.relay(DEMO_PHONES[0], "1")
    results.append(("短信 SMS", f'<p id="notice">{answer.get("reply", status)}</p>'))
    results.append(("评议卡 paper card", _paper(base, admin_password, window)))
    for name, page in results:
        lines.append(f"  {name}: {_notice(page)}")
    lines.append(f"  用手机打开（窗口码） open on a phone: {base}/r/w/{window}")
    lines.append(f"  用手机打开（办件码） open on a phone: {links[2]}")
    reply = json.dumps({"from": DEMO_PHONES[1], "text": "1"})
    lines.append(f"  短信回复 reply by SMS: curl -d '{reply}' {gateway.url}/reply")
    return lines


def _paper(base: str, password: str, window: str) -> str:
    clerk = Browser(base)
    token = CSRF.search(clerk.get("/login")).group(1)
    clerk.post("/login", {"csrf_token": token, "username": "admin", "password": password})
    token = CSRF.search(clerk.get("/paper")).group(1)
    page = clerk.post("/paper/cards", {"csrf_token": token, "window": window, "count": "1"})[1]
    card = re.search(r'id="card-([^"]+)"', page).group(1)
    day = dt.date.today().isoformat()
    fields = {"csrf_token": token, "card_no": card, "card_date": day, "level": "2", "reasons": "1"}
    return clerk.post("/paper/entry", fields)[1]
