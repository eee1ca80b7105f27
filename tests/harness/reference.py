"""An encoder written apart from protocols/, to check the canonical bytes
against: it builds JSON with the standard library and then applies the
canonical rules for control characters."""

from __future__ import annotations

import json
import re

SHORT = {"n": 10, "r": 13, "t": 9, "b": 8, "f": 12}


def _escape(match) -> str:
    code = SHORT.get(match[1])
    return match[0] if code is None else f"\\u{code:04x}"


def reference_canonical(value) -> bytes:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # the standard library writes \n \r \t \b \f short forms and leaves DEL raw;
    # the canonical form uses \u00xx for every control character and DEL. Each
    # escape is read whole, left to right, so an escaped backslash followed by
    # the letter r stays as it is (a plain replace of "backslash r" turned the
    # string backslash-r into a carriage return: hypothesis found it)
    text = re.sub(r"\\(.)", _escape, text)
    text = text.replace("\x7f", "\\u007f")
    return text.encode("utf-8")
