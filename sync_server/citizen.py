"""The citizen channels: QR pages, web portal, SMS, paper cards, phones (issue 10).

A feature module (sync_server/features.py): init_app is its join with the
collector. The parts:

- citizen_pages.py: the window QR, case QR and web portal rating pages;
- citizen_portal.py: the portal's search by case number and check, the
  kiosk follow-up page;
- citizen_sheets.py: printable window QR sheets, case QR images, and the
  reveal of a rater's phone number;
- sms.py (with sms_gateways.py): invitations and replies by SMS;
- paper.py: printable paper cards and the clerk's entry page;
- phones.py: phone numbers sealed at rest.

Config keys (docs/citizen-channels.md):

- ``HCP_PUBLIC_URL``: the address citizens reach the collector at, for QR
  codes and links (default: the address of the request);
- the rating period is channels.py's ``HCP_RATING_PERIOD_WORKING_DAYS``;
- ``HCP_PORTAL_MAX_FAILURES`` / ``HCP_PORTAL_MAX_FAILURES_PER_ADDRESS`` /
  ``HCP_PORTAL_WINDOW_S``: failed checks allowed per case / per address
  within the window (default 5 / 20 / 900 s);
- ``HCP_SMS_GATEWAY_URL``, ``HCP_SMS_INBOUND_SECRET``: the SMS gateway
  (sync_server/sms_gateways.py);
- ``HCP_CITIZEN_MAX_PER_TOKEN_MINUTE`` / ``HCP_CITIZEN_MAX_PER_ADDRESS_MINUTE``:
  requests to the citizen pages per token / per address in a sliding minute
  (default 20 / 120; citizen_limits.py);
- ``HCP_WINDOW_QR_MAX_PER_ADDRESS``: window QR ratings without a service
  event taken per window from one address in a day (default 3);
- ``HCP_PAPER_LATE_WORKING_DAYS``: paper cards entered later than this many
  working days after the card's date are flagged late (default 5).
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

DEFAULTS = {
    "HCP_PUBLIC_URL": None,
    "HCP_PORTAL_MAX_FAILURES": 5,
    "HCP_PORTAL_MAX_FAILURES_PER_ADDRESS": 20,
    "HCP_PORTAL_WINDOW_S": 900,
    "HCP_SMS_GATEWAY_URL": None,
    "HCP_SMS_INBOUND_SECRET": None,
    "HCP_PAPER_LATE_WORKING_DAYS": 5,
    "HCP_WINDOW_QR_MAX_PER_ADDRESS": 3,
}


def init_app(app) -> None:
    """Register the citizen pages, the staff pages and the SMS hook."""
    from sync_server import (
        citizen_limits,
        citizen_pages,
        citizen_portal,
        citizen_sheets,
        contacts,
        paper,
        phones,
        sms,
        web,
    )

    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)
    # a device's contact is sealed with the app's phone key, by the ingest too
    engine = app.extensions["hcp_engine"]
    phone_key = phones.instance_key(app.instance_path)
    app.extensions.setdefault("hcp_citizen_keys", {})[phones.KEY_FILE] = phone_key
    contacts.use_key(engine, phone_key)
    contacts.seal_clear_rows(engine, phone_key)
    citizen_limits.init_app(app)
    app.register_blueprint(citizen_pages.bp)
    app.register_blueprint(citizen_portal.bp)
    app.register_blueprint(citizen_sheets.bp)
    app.register_blueprint(paper.bp)
    sms.init_app(app)
    citizen_sheets.register_api()
    web.register_nav(app, "citizen_sheets.sheet", _l("Window QR codes"), "qr_sheets")
    web.register_nav(app, "paper.entry", _l("Paper cards"), "paper_entry", prefix="paper.")


def keep_event_phone(conn, event: dict, phone: str) -> str:
    """The applicant's phone of a service event being registered
    (sync_server/service_events.py calls this in its transaction): sealed
    apart (phones.py), and an SMS invitation queued (sms.py). Returns the
    reference the event keeps instead of the number."""
    from sync_server import phones, sms

    key = phones.app_key()
    ref = phones.keep_for_event(conn, key, event["case_no"], event["service_no"], phone)
    sms.queue_invitation(conn, key, event, phone)
    return ref
