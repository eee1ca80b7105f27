"""Redaction of what a device sent, before anyone sees it (DOMAIN §7).

A rater's contact never reaches the quarantine or a page: payloads are
redacted when they are kept, and again when they are shown. Redaction cannot
fail whatever it is given (deep nesting, lone surrogates, bytes that are not
UTF-8, text that is not JSON): what it cannot parse, it masks.
"""

from __future__ import annotations

import json
import re

SECRET_KEYS = (
    "contact",
    "contacts",
    "phone",
    "mobile",
    "key",
    "key_hex",
    "password",
    "secret",
    "token",
)
MASK = "[redacted]"
_DIGIT_RUN = re.compile(r"\d{5,}")


def _secret(key) -> bool:
    return isinstance(key, str) and key.lower() in SECRET_KEYS


def scrub(value):
    """A copy of a parsed JSON value without secret keys at any depth
    (iterative: no recursion limit to hit)."""
    root = [value]
    stack = [(root, 0, value)]
    while stack:
        parent, slot, item = stack.pop()
        if isinstance(item, dict):
            copy = {}
            parent[slot] = copy
            for key, child in item.items():
                if _secret(key):
                    copy[key] = MASK
                else:
                    copy[key] = None
                    stack.append((copy, key, child))
        elif isinstance(item, list):
            copy = [None] * len(item)
            parent[slot] = copy
            for i, child in enumerate(item):
                stack.append((copy, i, child))
        else:
            parent[slot] = item
    return root[0]


def mask_text(text: str) -> str:
    """For text that is not JSON: every run of five or more digits masked."""
    return _DIGIT_RUN.sub(lambda m: "#" * len(m.group()), text)


def as_text(payload) -> str:
    """Any payload (bytes, str or a parsed value) as text; never raises."""
    try:
        if isinstance(payload, (bytes, bytearray, memoryview)):
            return bytes(payload).decode("utf-8", "replace")
        if isinstance(payload, str):
            return payload.encode("utf-8", "replace").decode("utf-8")
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    except Exception:  # noqa: BLE001 - whatever it was, it is shown as masked text
        return "<unprintable " + type(payload).__name__ + ">"


def redact(payload) -> str:
    """Text safe to keep and to show: secret keys removed from JSON at any
    depth; digit runs masked in anything that is not JSON."""
    if not isinstance(payload, (bytes, bytearray, memoryview, str)):
        try:
            text = json.dumps(
                scrub(payload), ensure_ascii=False, separators=(",", ":"), default=str
            )
            return as_text(text)
        except Exception:  # noqa: BLE001
            return mask_text(as_text(payload))
    text = as_text(payload)
    try:
        parsed = json.loads(text)
    except Exception:  # noqa: BLE001 - not JSON, too deep, too large a number ...
        return mask_text(text)
    try:
        return as_text(json.dumps(scrub(parsed), ensure_ascii=False, separators=(",", ":")))
    except Exception:  # noqa: BLE001
        return mask_text(text)
