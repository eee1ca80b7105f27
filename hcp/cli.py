"""The `hcp` command: one entry point, one subcommand per part of the suite."""

from __future__ import annotations

import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hcp", description="好差评 evaluation suite")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    from hcp import (
        bench,
        demo,
        fault,
        fleet,
        font,
        kiosk,
        provision,
        sim_board,
        sim_keypad,
        sim_province,
        sim_sms,
        window,
    )
    from sync_server import cases_alerts, outbox_cli
    from sync_server import cli as collector_cli

    demo.register(commands)
    bench.register(commands)
    sim = commands.add_parser("sim", help="simulator runs (for tests and proofs)")
    runs = sim.add_subparsers(dest="sim_command", metavar="RUN")
    runs.required = True
    fault.register(runs)
    sim_keypad.register(runs)
    sim_board.register(runs)
    sim_province.register(runs)
    sim_sms.register(runs)
    window.register(commands)
    kiosk.register(commands)
    font.register(commands)
    provision.register(commands)
    collector_cli.register(commands)
    fleet.register(commands)
    outbox_cli.register(commands)
    cases_alerts.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())
