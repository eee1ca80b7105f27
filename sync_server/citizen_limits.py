"""How often a citizen page may be asked, per token and per address.

The citizen pages are public. Besides the portal's count of failed checks
(citizen_portal.py) and the window QR's daily count of ratings without an
event (citizen_pages.py), every request to a citizen page counts here, in a
sliding minute:

- per token: a case QR token (`/r/c/<token>`), a portal link token
  (`/rate/e/<token>`), the case number a portal search names (`POST /rate`)
  and the rating a kiosk follow-up names (`/followup`):
  `HCP_CITIZEN_MAX_PER_TOKEN_MINUTE` (default 20; a rating takes 3 to 5
  requests). A window QR's address is shared by everyone at that window,
  so it is not a token here: it counts per address only;
- per address (`request.remote_addr`): `HCP_CITIZEN_MAX_PER_ADDRESS_MINUTE`
  (default 120; a hall's Wi-Fi puts many phones behind one address).

Past either, the page answers 429 with "请求过于频繁，请1分钟后再试。" and
`Retry-After`, and nothing is read or stored. A refused request counts too,
so hammering on keeps the door shut until the client stops for a minute.

The counts are kept in the memory of each collector process (they are about
the next minute only, and a flood must cost no database write); several
processes behind one address each keep their own.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

from flask import current_app, request
from flask_babel import gettext as _

WINDOW_S = 60.0
MAX_KEYS = 20_000  # keys remembered at once; the least recently used go first
DEFAULTS = {"HCP_CITIZEN_MAX_PER_TOKEN_MINUTE": 20, "HCP_CITIZEN_MAX_PER_ADDRESS_MINUTE": 120}
TOKEN_ROUTES = {  # endpoint -> where its token is
    "citizen.case_qr": ("view", "token"),
    "citizen.portal_rate": ("view", "token"),
    "citizen_portal.find": ("form", "case_no"),
    "citizen_portal.followup": ("either", "id"),
}
BLUEPRINTS = ("citizen", "citizen_portal")


class Limiter:
    """Requests per key in a sliding window, with a bounded memory."""

    def __init__(self, clock=time.monotonic, window_s: float = WINDOW_S, max_keys: int = MAX_KEYS):
        self.clock = clock
        self.window_s = window_s
        self.max_keys = max_keys
        self._seen: OrderedDict[str, deque] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int) -> bool:
        """Count one request for `key`; False when it is over `limit` in the window."""
        now = self.clock()
        with self._lock:
            times = self._seen.pop(key, None) or deque()
            while times and times[0] <= now - self.window_s:
                times.popleft()
            times.append(now)
            if len(times) > limit + 1:  # keep no more than needed to decide
                times.popleft()
            self._seen[key] = times
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
            return len(times) <= limit

    def __len__(self) -> int:
        return len(self._seen)


def limiter(app) -> Limiter:
    return app.extensions.setdefault("hcp_citizen_limiter", Limiter())


def _token() -> str | None:
    where = TOKEN_ROUTES.get(request.endpoint or "")
    if where is None:
        return None
    kind, name = where
    if kind == "view":
        value = (request.view_args or {}).get(name)
    elif kind == "form":
        value = request.form.get(name) if request.method == "POST" else None
    else:
        source = request.form if request.method == "POST" else request.args
        value = source.get(name)
    value = (value or "").strip()
    return value[:200] or None


def too_many_text() -> str:
    return _("Too many requests. Try again in a minute.")


def check():
    """A before_request hook: None, or the 429 answer."""
    if request.blueprint not in BLUEPRINTS:
        return None
    counter = limiter(current_app)
    address = "a:" + (request.remote_addr or "")[:64]
    allowed = counter.hit(address, int(current_app.config["HCP_CITIZEN_MAX_PER_ADDRESS_MINUTE"]))
    token = _token()
    if token is not None:
        key = "t:" + (request.endpoint or "") + ":" + token
        allowed = (
            counter.hit(key, int(current_app.config["HCP_CITIZEN_MAX_PER_TOKEN_MINUTE"]))
            and allowed
        )
    if allowed:
        return None
    from sync_server.citizen_pages import done

    body, status = done(too_many_text(), 429, True)
    return body, status, {"Retry-After": str(int(WINDOW_S))}


def init_app(app) -> None:
    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)
    limiter(app)
    # first of the app's hooks: a flood is turned away before the CSRF check reads its form
    app.before_request_funcs.setdefault(None, []).insert(0, check)
