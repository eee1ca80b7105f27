"""Telling a unit's duty contacts (值班联系人) that a 差评 case came in.

The alert is recorded with the case, in the transaction that stores the
rating (`cases.after_store`): `pending` when the unit has duty contacts,
`no_contact` when it has none (shown to the district office). Delivering it
is a separate, slower step outside that transaction: `deliver(engine,
sender)` sends what is pending, one alert at a time, and records `sent` or
`failed` with the error; a failed alert is tried again up to MAX_ATTEMPTS.
`hcp cases alerts` runs it (once, or every N seconds); admins have a button.

A sender is any callable `sender(alert: dict) -> None` that raises on
failure. `HCP_CASE_ALERT_SENDER` picks one:

- ``log`` (default): one line on the ``hcp.cases.alerts`` logger;
- ``webhook:<http(s) URL>``: a JSON POST; any answer but 2xx is a failure.

An alert names the case, its unit, its level, when the rating was made and
the recipients; never the rater's identity, contact or words.
"""

from __future__ import annotations

import json
import logging
import urllib.request

from sqlalchemy import select

from sync_server import db
from sync_server.schema_cases import case_alerts, cases

MAX_ATTEMPTS = 5
WEBHOOK_TIMEOUT_S = 5
log = logging.getLogger("hcp.cases.alerts")


def log_sender(alert: dict) -> None:
    names = ", ".join(r["name"] for r in alert["recipients"])
    log.info(
        "case %s for unit %s (%s stars, rated %s): alert to %s",
        alert["case_id"],
        alert["unit_id"],
        alert["stars"],
        alert["effective_at"],
        names,
    )


class WebhookSender:
    """POSTs the alert as JSON to `url` (the unit's SMS or messaging gateway)."""

    def __init__(self, url: str, timeout: float = WEBHOOK_TIMEOUT_S):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"HCP_CASE_ALERT_SENDER: a webhook needs an http(s) URL, got {url!r}")
        self.url = url
        self.timeout = timeout

    def __call__(self, alert: dict) -> None:
        body = json.dumps(alert, ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
            if not 200 <= answer.status < 300:
                raise RuntimeError(f"webhook answered {answer.status}")


def sender_from_config(value: str | None):
    value = (value or "log").strip()
    if value == "log":
        return log_sender
    if value.startswith("webhook:"):
        return WebhookSender(value.removeprefix("webhook:"))
    raise ValueError(f"HCP_CASE_ALERT_SENDER: must be log or webhook:<URL>, got {value!r}")


def _message(row) -> dict:
    return {
        "alert_id": row.id,
        "case_id": row.case_id,
        "unit_id": row.unit_id,
        "stars": row.stars,
        "effective_at": row.effective_at,
        "recipients": json.loads(row.recipients),
    }


def deliver(engine, sender, limit: int = 100) -> dict:
    """Send up to `limit` pending (or failed, not given up) alerts; returns
    {"sent": n, "failed": m}. Each alert is claimed before it is sent, so two
    deliverers never send one alert twice."""
    a, c = case_alerts.c, cases.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(a.id, a.case_id, a.unit_id, a.recipients, c.stars, c.effective_at)
            .join(cases, c.id == a.case_id)
            .where(a.state.in_(("pending", "failed")), a.attempts < MAX_ATTEMPTS)
            .order_by(a.id)
            .limit(limit)
        ).all()
    counts = {"sent": 0, "failed": 0}
    for row in rows:
        with engine.begin() as conn:
            claimed = conn.execute(
                case_alerts.update()
                .where(a.id == row.id, a.state.in_(("pending", "failed")))
                .values(state="sending", attempts=a.attempts + 1)
            ).rowcount
        if claimed != 1:
            continue
        try:
            sender(_message(row))
        except Exception as exc:  # noqa: BLE001 - any failure of a sender is recorded
            values = {"state": "failed", "last_error": f"{type(exc).__name__}: {exc}"[:500]}
            counts["failed"] += 1
        else:
            values = {"state": "sent", "sent_at": db.utc_now(), "last_error": None}
            counts["sent"] += 1
        with engine.begin() as conn:
            conn.execute(case_alerts.update().where(a.id == row.id).values(**values))
    return counts


def register(commands) -> None:
    """`hcp cases alerts`: deliver pending alerts (hcp/cli.py adds this)."""
    cases_cmd = commands.add_parser("cases", help="the bad-review loop (差评 cases)")
    sub = cases_cmd.add_subparsers(dest="cases_command", metavar="COMMAND")
    sub.required = True
    alerts = sub.add_parser("alerts", help="send pending alerts to units' duty contacts")
    alerts.add_argument("--db", required=True, help="the collector's database URL")
    alerts.add_argument("--sender", default="log", help="log (default) or webhook:<URL>")
    alerts.add_argument("--every", type=float, default=0, help="repeat every N seconds")
    alerts.set_defaults(handler=_run_alerts)


def _run_alerts(args) -> int:
    import time

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sender = sender_from_config(args.sender)
    engine = db.make_engine(args.db)
    try:
        while True:
            counts = deliver(engine, sender)
            print(f"sent {counts['sent']}, failed {counts['failed']}")
            if args.every <= 0:
                return 0
            time.sleep(args.every)
    except KeyboardInterrupt:
        return 0
    finally:
        engine.dispose()
