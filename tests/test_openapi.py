"""The OpenAPI document describes every /api/v1 route, and real answers of
each (successes and errors) match the schemas it gives.

The validator below checks the subset of JSON Schema the document uses:
type (one or a list), enum, properties, required, additionalProperties,
items, minItems, maxItems and local $ref.
"""

from __future__ import annotations

import re

import pytest

from tests import access, test_access
from tests.test_access import build_world, client_as

reading_world = test_access.reading_world  # the fixture: one world per database


def problems(value, schema, document, where="$") -> list[str]:
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return problems(value, document["components"]["schemas"][name], document, where)
    found = []
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_is(value, t) for t in types):
            return [f"{where}: {value!r} is not {'/'.join(types)}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                found.append(f"{where}: missing {name}")
        for name, item in value.items():
            if name in properties:
                found += problems(item, properties[name], document, f"{where}.{name}")
            elif schema.get("additionalProperties", True) is False:
                found.append(f"{where}: unexpected {name}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 1 << 30):
            found.append(f"{where}: {len(value)} items")
        if "items" in schema:
            for i, item in enumerate(value):
                found += problems(item, schema["items"], document, f"{where}[{i}]")
    return found


def _is(value, kind) -> bool:
    return {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }[kind](value)


# --- the validator checks what it claims to ------------------------------------------

DOC = {"components": {"schemas": {"E": {"type": "object", "properties": {"a": {"type": ["integer", "null"]}}, "required": ["a"], "additionalProperties": False}}}}  # fmt: skip


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ({"a": 1}, []),
        ({"a": None}, []),
        ({"a": True}, ["$.a: True is not integer/null"]),
        ({}, ["$: missing a"]),
        ({"a": 1, "contact": "138"}, ["$: unexpected contact"]),
        ([], ["$: [] is not object"]),
    ],
)
def test_the_validator(value, found):
    assert problems(value, {"$ref": "#/components/schemas/E"}, DOC) == found


# --- the document against the app and its answers --------------------------------------


@pytest.fixture
def world(engine_app):
    build_world(engine_app)
    return engine_app


def _template(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def test_every_api_route_is_described_and_nothing_else(world):
    document = world.test_client().get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    routes = {
        (_template(rule.rule), method.lower())
        for rule in world.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    assert routes == described


# (role, method, path, body, status): each described route, its successes and its errors
CALLS = [
    ("admin", "get", "/api/v1/evaluations", None, 200),
    ("admin", "get", "/api/v1/evaluations?stars=9", None, 400),
    (None, "get", "/api/v1/evaluations", None, 401),
    ("technician", "get", "/api/v1/evaluations", None, 403),
    ("supervisor", "get", "/api/v1/evaluations/summary?bad=1", None, 200),
    ("admin", "get", "/api/v1/evaluations/ws:1", None, 200),
    ("unit_manager", "get", "/api/v1/evaluations/xg:1", None, 404),
    ("supervisor", "post", "/api/v1/contacts", {"record_id": "ws:1"}, 200),
    ("supervisor", "post", "/api/v1/contacts", {"id": "ws:1"}, 400),
    ("other_manager", "post", "/api/v1/contacts", {"record_id": "ws:1"}, 404),
    ("admin", "get", "/api/v1/quarantine", None, 200),
    ("admin", "get", "/api/v1/devices", None, 200),
    ("technician", "get", "/api/v1/devices", None, 200),
    ("admin", "get", "/api/v1/devices/kp-01/days?days=3", None, 200),
    ("admin", "get", "/api/v1/devices/kp-77/days", None, 404),
    ("admin", "get", "/api/v1/pf-map", None, 200),
    ("admin", "put", "/api/v1/pf-map", "same", 200),
    ("supervisor", "put", "/api/v1/pf-map", "same", 403),
    ("admin", "get", "/api/v1/tags", None, 200),
    ("admin", "get", "/api/v1/tags?mode=both", None, 400),
    ("clerk", "get", "/api/v1/org/units", None, 200),
    ("supervisor", "get", "/api/v1/analytics/units?since=2026-01-01", None, 200),
    ("unit_manager", "get", "/api/v1/analytics/units?unit=370305002", None, 404),
    ("admin", "get", "/api/v1/analytics/units?since=2026-13-01", None, 400),
    ("admin", "get", "/api/v1/audit", None, 200),
    (None, "get", "/api/v1/openapi.json", None, 200),
    *access.merged("OPENAPI_CALLS", list),  # each feature's operations (tests/access/)
]


def _changes(call) -> bool:
    _role, method, _path, _body, status = call
    return method != "get" and status < 300


# A read, or a change the app refuses, changes nothing: those share one world per
# database for the module (test_access.reading_world); a change gets a fresh world.
READS = [call for call in CALLS if not _changes(call)]
CHANGES = [call for call in CALLS if _changes(call)]


@pytest.mark.parametrize(("role", "method", "path", "body", "status"), READS)
def test_real_answers_of_reads_and_refusals_match_the_document(
    reading_world, role, method, path, body, status
):
    if role not in reading_world.logged_in:
        reading_world.logged_in[role] = client_as(reading_world, role or "anonymous")
    check_answer(reading_world, reading_world.logged_in[role], method, path, body, status)


@pytest.mark.parametrize(("role", "method", "path", "body", "status"), CHANGES)
def test_real_answers_of_changes_match_the_document(world, role, method, path, body, status):
    check_answer(world, client_as(world, role or "anonymous"), method, path, body, status)


def check_answer(app, client, method, path, body, status):
    document = client.get("/api/v1/openapi.json").get_json()
    if body == "same":
        body = {"rows": client_as(app, "admin").get("/api/v1/pf-map").get_json()["items"]}
        body = {"rows": [{k: row[k] for k in ("channel", "client", "pf")} for row in body["rows"]]}
    if method == "post" and path == "/api/v1/contacts" and status < 300:
        client.post("/api/v1/contacts", json={"record_id": "ws:1"})  # an audit entry to list
    response = client.open(path, method=method.upper(), json=body)
    assert response.status_code == status, response.get_data(as_text=True)
    operation = document["paths"][_template_of(document, path)][method]
    described = operation["responses"][str(status)]
    schema = described["content"]["application/json"]["schema"]
    assert problems(response.get_json(), schema, document) == []


def _template_of(document, path):
    bare = path.split("?")[0]
    if bare in document["paths"]:
        return bare
    return next(
        t for t in document["paths"] if re.fullmatch(re.sub(r"\{[a-z_]+\}", "[^/]+", t), bare)
    )


def test_every_described_operation_is_called(app):
    # the app's document: each feature adds its paths when the app is made
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    called = {(_template_of(document, p), m) for _r, m, p, _b, _s in CALLS}
    described = {(p, m) for p, item in document["paths"].items() for m in item}
    assert sorted(described - called) == []


# --- one place describes each route ---------------------------------------------------

ONE_PLACE = """
import copy, json, sys, tempfile
from sync_server import openapi
before = json.loads(json.dumps(openapi.DOCUMENT))
from sync_server import create_app
with tempfile.TemporaryDirectory() as folder:
    app = create_app({"DATABASE_URL": f"sqlite:///{folder}/c.db", "SECRET_KEY": "x"},
                     instance_path=folder + "/instance")
    after = app.test_client().get("/api/v1/openapi.json").get_json()
changed = [p for p in before["paths"] if after["paths"][p] != before["paths"][p]]
changed += [s for s, v in before["components"]["schemas"].items()
            if after["components"]["schemas"][s] != v]
print(json.dumps(changed))
"""


def test_what_openapi_py_describes_is_served_as_written():
    """Features add their own routes when the app is made; none rewrites a
    route described in sync_server/openapi.py (the analytics' descriptions
    were once overwritten at start by another module). A fresh process: this
    one's document has been added to by every app the tests made."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", ONE_PLACE], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_the_analytics_take_local_days_and_the_lists_take_days_or_utc_instants():
    from sync_server import openapi

    def param(path, name):
        (found,) = (p for p in openapi.PATHS[path]["get"]["parameters"] if p["name"] == name)
        return found["description"]

    for path in ("/api/v1/analytics/units", "/api/v1/analytics/{view}", "/api/v1/analytics/bad"):
        assert param(path, "since").startswith("YYYY-MM-DD only: a local day in Asia/Shanghai")
    assert param("/api/v1/evaluations", "until").startswith(
        "YYYY-MM-DD: a local day in Asia/Shanghai, to its last second (23:59:59 local"
    )
