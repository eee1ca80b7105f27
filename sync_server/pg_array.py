"""Columns of a batch as PostgreSQL array parameters, written cheaply.

The ingest sends a batch's rows to PostgreSQL as one array per column
(INSERT ... SELECT FROM unnest(%s::text[], ...)). psycopg writes a Python
list as an array in Python, value by value (a pattern search on each):
with a group of a thousand ratings that was most of the CPU the collector
spent on PostgreSQL (hcp.bench_ingest_phases, cProfile). `param` writes the
array's text form itself, with the joins in C: every text element between
double quotes, a double quote or backslash in it escaped with a backslash
(PostgreSQL's array input rules), NULL for None, integers in decimal, t and
f for booleans. A column holding anything else (a value of another type) is
left to psycopg as a list, as before; so is every element type but these.
`tests/test_pg_array.py` checks with hypothesis that PostgreSQL reads back
exactly the values given, text of every character class included.
"""

from __future__ import annotations

INTEGERS = ("smallint", "integer", "bigint")
_STR = frozenset((str, type(None)))  # exactly these types (a subclass goes to psycopg)
_INT = frozenset((int, type(None)))  # (bool is not int here: type(True) is bool)
_BOOL = frozenset((bool, type(None)))


def _text(values: list):
    if not set(map(type, values)) <= _STR:
        return None
    if None in values:
        body = ",".join("NULL" if v is None else '"' + _escaped(v) + '"' for v in values)
        return "{" + body + "}"
    if not values:
        return "{}"
    plain = "".join(values)  # (the separator below holds quotes itself)
    if '"' in plain or "\\" in plain:
        values = list(map(_escaped, values))
    return '{"' + '","'.join(values) + '"}'


def _escaped(value: str) -> str:
    if '"' in value or "\\" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"')
    return value


def _integers(values: list):
    if not set(map(type, values)) <= _INT:
        return None
    if None in values:
        return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"
    return "{" + ",".join(map(str, values)) + "}"


def _booleans(values: list):
    if not set(map(type, values)) <= _BOOL:
        return None
    return "{" + ",".join("NULL" if v is None else ("t" if v else "f") for v in values) + "}"


def param(values: list, kind: str):
    """The parameter for `%s::<kind>[]`: the array's text form where `kind`
    and every value allow it, else `values` itself (psycopg writes it)."""
    if kind == "text":
        found = _text(values)
    elif kind in INTEGERS:
        found = _integers(values)
    elif kind == "boolean":
        found = _booleans(values)
    else:
        found = None
    return values if found is None else found
