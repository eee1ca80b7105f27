"""`hcp collector rebuild-figures`: recompute every pre-aggregated figure from
the stored evaluations (sync_server/figures.py).

    hcp collector rebuild-figures [--db URL]

Safe while collectors run: on PostgreSQL the figures table is locked for the
rebuild and a batch stored meanwhile is added after it; on SQLite the rebuild
holds the database's write lock. Also runs as
``python -m sync_server.figures_cli [--db URL]``.
"""

from __future__ import annotations

import argparse
import sys
import time


def rebuild_command(args) -> int:
    from sync_server import db, figures

    if args.db:
        engine = db.make_engine(args.db)
        db.init(engine)
    else:
        from sync_server import create_app

        engine = create_app().extensions["hcp_engine"]
    started = time.perf_counter()
    with engine.begin() as conn:
        counted = figures.rebuild(conn)
    elapsed = time.perf_counter() - started
    print(f"figures rebuilt from {counted} counting ratings in {elapsed:.1f} s")
    return 0


def register(collector_commands) -> None:
    """Add `rebuild-figures` to the `hcp collector` subcommands."""
    parser = collector_commands.add_parser(
        "rebuild-figures", help="recompute the pre-aggregated figures from the evaluations"
    )
    parser.add_argument("--db", default=None, help="SQLAlchemy database URL")
    parser.set_defaults(handler=rebuild_command)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sync_server.figures_cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["rebuild-figures", *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
