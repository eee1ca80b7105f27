"""Long fault, board and load runs: marked `long`, left out of `make test`
(which must fit about ten minutes on two cores) and run by `make test-long`.

A long test is skipped, with the command that runs it as the reason, unless
HCP_LONG=1; the summary line of `make test` counts them, so none disappears
silently.
"""

from __future__ import annotations

import os

import pytest

LONG_ENV = "HCP_LONG"  # set to 1 by `make test-long`


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"long: a long fault, board or load run, skipped unless {LONG_ENV}=1 (`make test-long`)",
    )


def pytest_collection_modifyitems(config, items):
    if os.environ.get(LONG_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"a long run: `make test-long` runs it ({LONG_ENV}=1)")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)
