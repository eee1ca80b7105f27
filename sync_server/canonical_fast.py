"""Canonical JSON bytes on the collector, in C where the text allows it.

protocols.canonical writes every byte out in Python so that a board and the
collector agree; it is most of what verifying a record costs. For the
common record (only strings, integers, booleans, null, lists and objects
with string keys, and no character that canonical JSON escapes) CPython's
own JSON encoder, with sorted keys, no spaces and no ASCII escaping, writes
exactly the same bytes. Anything else (an escape, DEL, a float, a key that
is not a string, a subclass of a built-in type) goes to
protocols.canonical.dumps itself. `tests/test_canonical_fast.py` checks the
two agree, bytes and errors, over the whole record space with hypothesis.
"""

from __future__ import annotations

import json

from protocols import canonical

_encode = json.JSONEncoder(
    ensure_ascii=False,
    separators=(",", ":"),
    sort_keys=True,
    allow_nan=False,
    check_circular=False,
).encode

_SCALARS = (str, int, bool, type(None))


def _plain(value) -> bool:
    """Only the types canonical JSON and the C encoder write alike."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not _plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        return all(_plain(item) for item in value)
    return False


def dumps(value) -> bytes:
    """The bytes of protocols.canonical.dumps(value), faster."""
    if _plain(value):
        return dumps_plain(value)
    return canonical.dumps(value)


def dumps_plain(value) -> bytes:
    """dumps() for a value known to hold only what _plain() accepts (a
    record record_fast.plainly_valid recognised): the walk over it skipped."""
    text = _encode(value)
    # the C encoder escapes with a backslash exactly where canonical JSON
    # escapes too, but in other ways (\n for \u000a); DEL it leaves alone
    if "\\" not in text and "\x7f" not in text:
        return text.encode("utf-8")
    return canonical.dumps(value)
