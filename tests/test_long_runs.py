"""The `long` marker: skipped by `make test` with the command that runs it,
run when HCP_LONG=1 (`make test-long`)."""

pytest_plugins = ["pytester"]

SOURCE = """
import pytest

@pytest.mark.long
def test_a_long_run():
    assert 1 + 1 == 2

def test_a_short_one():
    assert True
"""


def test_a_long_test_is_skipped_with_the_command_that_runs_it(pytester, monkeypatch):
    monkeypatch.delenv("HCP_LONG", raising=False)
    pytester.makeconftest('pytest_plugins = ["tests.harness.long_runs"]')
    pytester.makepyfile(SOURCE)
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*a long run: `make test-long` runs it (HCP_LONG=1)*"])


def test_hcp_long_runs_it(pytester, monkeypatch):
    monkeypatch.setenv("HCP_LONG", "1")
    pytester.makeconftest('pytest_plugins = ["tests.harness.long_runs"]')
    pytester.makepyfile(SOURCE)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
