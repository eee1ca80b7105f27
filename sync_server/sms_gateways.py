"""The SMS gateway seam: what the collector needs from an SMS provider.

Outbound, a gateway is any object with

    send(phone: str, text: str) -> str   # the provider's message id

raising `GatewayError` when the message was not accepted (the collector
keeps an invitation queued and tries again; a reply that could not be sent
is logged). `HttpGateway` is the adapter for a gateway that takes

    POST <HCP_SMS_GATEWAY_URL>/send   {"to": "<phone>", "text": "<text>"}
    -> 200 {"id": "<message id>"}

which the simulated gateway (simulators/sms_gateway.py) speaks. A real
provider (a carrier's SMS platform, a cloud SMS service) gets an adapter
class of its own with the same `send`, made by `from_config`; its signing,
template ids and sender number are that adapter's business.

Inbound, the provider calls the collector:

    POST /sms/inbound   {"from": "<phone>", "text": "<reply>"}
    X-HCP-Signature: <hex HMAC-SHA256(HCP_SMS_INBOUND_SECRET, body bytes)>

and gets 200 {"reply": "<text sent back>"} (the collector also sends that
text through `send`). A provider whose callback has another shape is given a
small relay, or an adapter route, that checks the provider's own signature
and re-posts in this shape.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request

TIMEOUT_S = 5


class GatewayError(RuntimeError):
    pass


class HttpGateway:
    def __init__(self, url: str, timeout: float = TIMEOUT_S):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def send(self, phone: str, text: str) -> str:
        body = json.dumps({"to": phone, "text": text}, ensure_ascii=False).encode()
        request = urllib.request.Request(
            self.url + "/send",
            data=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                found = json.loads(answer.read().decode())
        except (OSError, ValueError, urllib.error.URLError) as exc:
            raise GatewayError(f"gateway {self.url}: {exc}") from None
        if not isinstance(found, dict) or not isinstance(found.get("id"), str):
            raise GatewayError(f"gateway {self.url}: no message id in the answer")
        return found["id"]


def from_config(config):
    """The gateway the app is configured with, or None (invitations then
    stay queued)."""
    url = config.get("HCP_SMS_GATEWAY_URL")
    return HttpGateway(url) if url else None


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(signature(secret, body), given)
