"""The guides name every setting and every command the code has.

The lists come from the code itself (the device's DEFAULTS, the collector's
config reads, the `hcp` argument parser), so a new setting or option without
documentation fails here.
"""

import argparse
import ast
from pathlib import Path

import pytest

from device import config as device_config
from hcp.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
TECHNICIAN_GUIDE = (ROOT / "docs" / "technician-guide.md").read_text()
# the operator guide and each feature's own guide (docs/<feature>.md), which
# the operator guide links; the protocol and the architecture are not guides
NOT_GUIDES = {"protocol.md", "architecture.md", "technician-guide.md", "operator-guide.md"}
FEATURE_GUIDES = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in NOT_GUIDES)
OPERATOR_GUIDE = "\n\n".join(
    path.read_text() for path in [ROOT / "docs" / "operator-guide.md", *FEATURE_GUIDES]
)


# -- device settings ---------------------------------------------------------


@pytest.mark.parametrize("key", list(device_config.DEFAULTS))
def test_every_device_setting_is_documented(key):
    assert f"`{key}`" in TECHNICIAN_GUIDE


@pytest.mark.parametrize("key", device_config.REQUIRED)
def test_the_required_device_settings_are_marked_provisioned(key):
    row = next(
        (line for line in TECHNICIAN_GUIDE.splitlines() if line.startswith(f"| `{key}` |")), None
    )
    assert row is not None, f"no table row for {key}"
    assert "provisioned" in row


# -- collector settings ------------------------------------------------------


def _is_config(node: ast.AST) -> bool:
    """`<anything>.config`, e.g. `app.config` or `current_app.config`."""
    return isinstance(node, ast.Attribute) and node.attr == "config"


def _string(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def collector_config_keys() -> set[str]:
    """Every Flask config key the collector reads or gives a default.

    Found in the source of sync_server/: `config["X"]` when read (a plain
    assignment such as `config["X"] = ...` sets an internal value that is not
    a setting), `config.get("X", ...)`, `config.setdefault("X", ...)`, and the
    keyword arguments of `config.from_mapping(...)` / `config.update(...)`,
    which is where create_app() puts its defaults.
    """
    keys = set()
    for path in sorted((ROOT / "sync_server").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Subscript) and _is_config(node.value):
                key = _string(node.slice)
                if key and isinstance(node.ctx, ast.Load):
                    keys.add(key)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and _is_config(node.func.value)
            ):
                method = node.func.attr
                if method in ("get", "setdefault") and node.args:
                    key = _string(node.args[0])
                    if key:
                        keys.add(key)
                elif method in ("from_mapping", "update"):
                    keys.update(kw.arg for kw in node.keywords if kw.arg)
    return keys


COLLECTOR_KEYS = sorted(collector_config_keys())


def test_the_collector_config_scan_finds_the_known_keys():
    # guards against a scan that silently finds nothing after a refactor
    assert {"DATABASE_URL", "SECRET_KEY", "HCP_TIMEZONE"} <= set(COLLECTOR_KEYS)


@pytest.mark.parametrize("key", COLLECTOR_KEYS)
def test_every_collector_setting_is_documented(key):
    assert f"`{key}`" in OPERATOR_GUIDE


# -- hcp commands ------------------------------------------------------------


def walk_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Yield (path, parser) for `parser` and every subcommand below it, depth first."""
    yield path, parser
    seen = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias of a command already walked
                    continue
                seen.add(id(sub))
                yield from walk_commands(sub, (*path, name))


def long_options(parser: argparse.ArgumentParser) -> list[str]:
    return [
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]


def has_subcommands(parser: argparse.ArgumentParser) -> bool:
    return any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)


def sections(markdown: str, level: str) -> dict[str, str]:
    """Heading text -> the text under it, up to the next heading of `level` or higher."""
    found = {}
    stop = tuple("#" * n + " " for n in range(1, len(level) + 1))
    lines = markdown.splitlines()
    for start, line in enumerate(lines):
        if line.startswith(level + " "):
            body = []
            for following in lines[start + 1 :]:
                if following.startswith(stop):
                    break
                body.append(following)
            heading = line[len(level) + 1 :].strip()
            # a command in the operator guide and in a feature's guide: both count
            found[heading] = (found.get(heading, "") + "\n" + "\n".join(body)).strip("\n")
    return found


COMMANDS = [(path, parser) for path, parser in walk_commands(build_parser()) if path]
# each guide's "## Commands" section; a feature's commands are in its own guide
COMMANDS_SECTION = "\n\n".join(
    sections(path.read_text(), "##").get("Commands", "")
    for path in [ROOT / "docs" / "operator-guide.md", *FEATURE_GUIDES]
)
COMMAND_SECTIONS = sections(COMMANDS_SECTION, "###")


def test_the_operator_guide_links_every_feature_guide():
    guide = (ROOT / "docs" / "operator-guide.md").read_text()
    assert [p.name for p in FEATURE_GUIDES if f"]({p.name})" not in guide] == []


def test_the_command_walk_finds_the_known_commands():
    found = {" ".join(path) for path, _ in COMMANDS}
    assert {"demo", "bench", "collector", "collector serve"} <= found


def test_the_operator_guide_has_a_commands_section():
    assert COMMANDS_SECTION.strip()


@pytest.mark.parametrize("path", [" ".join(path) for path, _ in COMMANDS])
def test_every_subcommand_is_documented(path):
    assert f"`hcp {path}" in COMMANDS_SECTION


@pytest.mark.parametrize(
    "path,option",
    [
        (" ".join(path), option)
        for path, parser in COMMANDS
        if long_options(parser) or not has_subcommands(parser)
        for option in long_options(parser) or [None]
    ],
)
def test_every_option_is_documented_under_its_command(path, option):
    # each command with options (and each leaf command) has its own
    # "### `hcp ...`" section, and each of its options is named there
    section = COMMAND_SECTIONS.get(f"`hcp {path}`")
    assert section is not None, f"no '### `hcp {path}`' section under '## Commands'"
    if option:
        assert f"`{option}" in section


@pytest.mark.parametrize("option", long_options(build_parser()))
def test_every_global_option_is_documented(option):
    assert f"`{option}`" in COMMANDS_SECTION
