"""`python -m kiosk ...`: the same as `hcp kiosk ...` (how LocalStack starts one)."""

import argparse
import sys

from hcp import kiosk


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiosk")
    commands = parser.add_subparsers(dest="command")
    kiosk.register(commands)
    args = parser.parse_args(["kiosk", *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
