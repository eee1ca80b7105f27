# Canonical JSON bytes: the one encoding that is signed and compared.
#
# Both CPython and MicroPython must produce identical bytes for the same
# value, and MicroPython's json.dumps has neither sort_keys nor ensure_ascii,
# so the encoding is written out here:
# - objects: keys sorted by code point, no whitespace;
# - strings: UTF-8 as is, except '"', '\\' and control characters
#   (< 0x20 and 0x7f), which are escaped as \" \\ and \u00xx;
# - integers in decimal; true, false, null. Floats are refused: no field of
#   the contract is fractional, and float text differs between ports.
# The result is valid JSON, so json.loads reads it back anywhere.


class CanonicalError(ValueError):
    pass


_HEX = "0123456789abcdef"


def _string(text, out):
    # fast path: min() runs in C on both interpreters and most strings need no escape
    if not text or (
        min(text) >= " " and '"' not in text and "\\" not in text and "\x7f" not in text
    ):
        out.append('"' + text + '"')
        return
    out.append('"')
    start = 0
    for i, ch in enumerate(text):
        code = ord(ch)
        if ch == '"' or ch == "\\" or code < 0x20 or code == 0x7F:
            if start < i:
                out.append(text[start:i])
            if ch == '"':
                out.append('\\"')
            elif ch == "\\":
                out.append("\\\\")
            else:
                out.append("\\u00" + _HEX[code >> 4] + _HEX[code & 15])
            start = i + 1
    if start < len(text):
        out.append(text[start:])
    out.append('"')


def _value(value, out):
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, str):
        _string(value, out)
    elif isinstance(value, (list, tuple)):
        out.append("[")
        first = True
        for item in value:
            if not first:
                out.append(",")
            first = False
            _value(item, out)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key in sorted(value):
            if not isinstance(key, str):
                raise CanonicalError("object keys must be strings, got " + repr(key))
            if not first:
                out.append(",")
            first = False
            _string(key, out)
            out.append(":")
            _value(value[key], out)
        out.append("}")
    else:
        raise CanonicalError("cannot encode " + type(value).__name__ + " canonically")


def dumps(value):
    """Return the canonical JSON encoding of value as UTF-8 bytes."""
    out = []
    _value(value, out)
    return "".join(out).encode("utf-8")
