"""`hcp collector digest` and `hcp collector rankings`.

- ``digest [--unit CODE] [--out FILE]``: prints the daily digest of cases
  due soon and overdue (sync_server/digest.py), and writes it to FILE too;
  for a daily cron job or a mail pipe.
- ``rankings [--period P | --due]``: stores the snapshot of a period (a
  month YYYY-MM, quarter YYYY-Qn, year YYYY or YYYY-MM-DD..YYYY-MM-DD);
  with --due, the month-end hook (rankings_data.tick): stores last month's
  snapshot if it has none yet.

Registered by sync_server/cli.py: ``rankings_cli.register(sub)``.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _app(args):
    from sync_server import create_app

    return create_app({"DATABASE_URL": args.db} if args.db else None)


def digest_command(args) -> int:
    from sync_server import digest, org

    app = _app(args)
    engine = app.extensions["hcp_engine"]
    try:
        with app.test_request_context("/"), engine.connect() as conn:
            if args.unit and org.get(conn, "units", args.unit) is None:
                print(f"error: --unit: no unit {args.unit!r}", file=sys.stderr)
                return 1
            text = digest.as_text(digest.build(conn, unit=args.unit))
    finally:
        engine.dispose()
    sys.stdout.write(text)
    if args.out:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"error: --out: cannot write {args.out}: {exc}", file=sys.stderr)
            return 1
    return 0


def rankings_command(args) -> int:
    from sync_server import rankings_data

    app = _app(args)
    engine = app.extensions["hcp_engine"]
    try:
        with app.test_request_context("/"):
            if args.due:
                period = rankings_data.tick(engine)
                print(f"stored {period}" if period else "nothing due: last month is stored")
                return 0
            with engine.begin() as conn:
                data = rankings_data.compute(conn, args.period, actor="cli")
            print(f"stored {data['period']} ({len(data['dimensions']['unit'])} units)")
            return 0
    except rankings_data.PeriodError as exc:
        print(f"error: --{exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def register(sub) -> None:
    """Add the commands to `hcp collector`'s subcommands."""
    digest = sub.add_parser("digest", help="print the daily digest of 差评 cases due and overdue")
    digest.add_argument("--db", default=None, help="SQLAlchemy database URL")
    digest.add_argument("--unit", help="only this unit's subtree")
    digest.add_argument("--out", help="also write the digest to this file")
    digest.set_defaults(handler=digest_command)

    rankings = sub.add_parser("rankings", help="store the rankings (通报) of a period")
    rankings.add_argument("--db", default=None, help="SQLAlchemy database URL")
    which = rankings.add_mutually_exclusive_group(required=True)
    which.add_argument("--period", help="YYYY-MM, YYYY-Qn, YYYY or YYYY-MM-DD..YYYY-MM-DD")
    which.add_argument("--due", action="store_true", help="last month, if not stored yet")
    rankings.set_defaults(handler=rankings_command)
