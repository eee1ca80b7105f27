"""Service events for the demo: what a business system would register as the
simulated windows handle their cases (docs/service-events.md).

`register_demo_events` is called by `hcp demo` once its organisation is in
place; the citizen channels of the demo (QR pages, web portal, SMS, paper)
then have real events to rate. Case numbers and item codes start with DEMO so
they can never be taken for real ones.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from sync_server import org, service_events
from sync_server.schema_channels import service_events as events_table

DEMO_ITEMS = ("DEMO370305000001", "DEMO370305000002", "DEMO370305000003")


def register_demo_events(engine, per_window: int = 3, now: dt.datetime | None = None) -> list:
    """Register `per_window` service events handled just now at every window
    of the organisation (with the staff member placed in the same unit, if
    any); returns the events as the API answers them."""
    now = now or dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y%m%d%H%M%S")
    made = []
    with engine.begin() as conn:
        windows = org.members(conn, "windows")
        staff_by_unit: dict = {}
        for member in org.members(conn, "staff"):
            staff_by_unit.setdefault(member["unit"], member["id"])
        for window in windows:
            if window["unit"] is None:
                continue
            for n in range(1, per_window + 1):
                handled = now - dt.timedelta(minutes=per_window - n + 1)
                body = {
                    "case_no": f"DEMO-{stamp}-{window['id']}-{n}",
                    "service_no": "1",
                    "item_code": DEMO_ITEMS[(n - 1) % len(DEMO_ITEMS)],
                    "unit_id": window["unit"],
                    "window_id": window["id"],
                    "handled_at": handled.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                if window["unit"] in staff_by_unit:
                    body["staff_id"] = staff_by_unit[window["unit"]]
                event, _created = service_events.register(conn, body, "demo", "hcp-demo", now=now)
                made.append(service_events.answer(conn, event))
    return made


def count(engine) -> int:
    """How many service events the store holds."""
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(events_table)).scalar()
