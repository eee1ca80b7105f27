"""An encoder written apart from protocols/, to check the canonical bytes
against: it builds JSON with the standard library and then applies the
canonical rules for control characters."""

from __future__ import annotations

import json


def reference_canonical(value) -> bytes:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # the standard library writes \n \r \t \b \f short forms and leaves DEL raw;
    # the canonical form uses \u00xx for every control character and DEL
    for short, code in (("\\n", 10), ("\\r", 13), ("\\t", 9), ("\\b", 8), ("\\f", 12)):
        text = text.replace(short, f"\\u{code:04x}")
    text = text.replace("\x7f", "\\u007f")
    return text.encode("utf-8")
