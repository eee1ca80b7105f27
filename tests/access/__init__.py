"""Each later feature's rows of the access matrix (tests/test_access.py).

A module here may define, in the shapes test_access.py uses for its own:
ROUTES (method, path, capability, body), GRANTS (role -> extra capabilities
those routes need), OUTSIDE, OUTSIDE_QUERY, SUCCESS_BY_PATH, KNOWN (rule ->
example path), ELSEWHERE (rules tested in another file, each with its reason
in a comment) and build(app), which adds the feature's part of the world
after test_access.build_world (a case for ws:1 and one for xg:1, say).
"""

from __future__ import annotations

import importlib
import pkgutil


def tables():
    return [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
    ]


def merged(name: str, kind):
    out = kind()
    for module in tables():
        part = getattr(module, name, None)
        if part is None:
            continue
        if isinstance(out, list):
            out.extend(part)
        elif isinstance(out, set):
            out |= set(part)
        elif name == "GRANTS":  # role -> capabilities: each table adds to a role's
            for role, capabilities in part.items():
                out[role] = set(out.get(role, ())) | set(capabilities)
        else:
            out.update(part)
    return out
