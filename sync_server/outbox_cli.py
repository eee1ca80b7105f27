"""`hcp outbox ...`: the report to the province from the command line.

    hcp outbox send --db URL --province URL --credential FILE
    hcp outbox status --db URL
    hcp outbox fault-run [--seconds 120] [--db URL]
    hcp outbox crash-run [--seconds 120] [--keypads 6] [--db URL]
    hcp outbox gaming-scan [--days 2] --db URL
    hcp outbox gaming-check [--days 30] [--seed 1] [--per-day 24]

`send` runs the sender on its own (`hcp collector serve` runs one too when
it is given a province); several may run, one sends at a time (a lease).
`status` prints the backlog and the lag as JSON. `gaming-scan` runs the
gaming rules with their default thresholds (a scheduled job; the page's scan
uses the app's settings). `fault-run` is the longer
fault run (sync_server/outbox_fault.py); `gaming-check` plants gaming in a
generated month and reports each rule's findings (sync_server/gaming_month.py).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path


def _engine(url):
    from sync_server import db

    default = Path(__file__).resolve().parent.parent / "instance" / "hcp.db"
    engine = db.make_engine(url or f"sqlite:///{default}")
    db.init(engine)
    return engine


def send(args) -> int:
    from sync_server import outbox_sender

    settings = {
        "HCP_PROVINCE_URL": args.province,
        "HCP_PROVINCE_CREDENTIAL": args.credential,
        "HCP_OUTBOX_BACKOFF_S": args.backoff,
        "HCP_OUTBOX_BACKOFF_MAX_S": args.backoff_max,
        "HCP_OUTBOX_LEASE_S": args.lease,
        "HCP_OUTBOX_BATCH": args.batch,
        "HCP_OUTBOX_POLL_S": args.poll,
        "HCP_PROVINCE_TIMEOUT_S": args.timeout,
    }
    try:
        sender = outbox_sender.Sender(_engine(args.db), settings)
    except (OSError, ValueError) as exc:
        print(f"error: --credential: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"outbox sender: sending to {args.province}", flush=True)
    try:
        sender.run(stop)
    except KeyboardInterrupt:
        stop.set()
    return 0


def status(args) -> int:
    from sync_server import outbox

    with _engine(args.db).connect() as conn:
        figures = outbox.figures(conn)
        figures["dead_letters"] = outbox.letters(conn)
    print(json.dumps(figures, ensure_ascii=False, indent=2))
    return 0


def fault_run(args) -> int:
    from sync_server import outbox_fault

    result = outbox_fault.run(args.db, seconds=args.seconds, workdir=args.workdir)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0 if result["ok"] else 1


def crash_run(args) -> int:
    from sync_server import outbox_crash

    result = outbox_crash.run(
        args.db, seconds=args.seconds, keypads=args.keypads, workdir=args.workdir
    )
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0 if result["ok"] else 1


def gaming_check(args) -> int:
    from sync_server import gaming_month

    report = gaming_month.check(args.db, days=args.days, seed=args.seed, per_day=args.per_day)
    print(gaming_month.describe(report))
    return 0


def gaming_scan(args) -> int:
    from sync_server import gaming

    if not 1 <= args.days <= 92:
        print("error: --days: must be 1 to 92", file=sys.stderr)
        return 1
    new = gaming.run_recent(_engine(args.db), args.days)
    print(f"gaming scan of the last {args.days} day(s): {new} new flag(s)")
    return 0


def register(commands) -> None:
    outbox_parser = commands.add_parser("outbox", help="the report to the provincial platform")
    sub = outbox_parser.add_subparsers(dest="outbox_command", metavar="ACTION")
    sub.required = True

    send_parser = sub.add_parser("send", help="run the sender on its own")
    send_parser.add_argument("--db", help="database URL (default the instance's SQLite)")
    send_parser.add_argument("--province", required=True, help="the province's base URL")
    send_parser.add_argument("--credential", required=True, help="the credential file (JSON)")
    send_parser.add_argument("--backoff", type=float, default=1.0, help="first back-off, s")
    send_parser.add_argument("--backoff-max", type=float, default=60.0, help="longest back-off, s")
    send_parser.add_argument("--lease", type=float, default=15.0, help="sender lease, s")
    send_parser.add_argument("--batch", type=int, default=200, help="rows per request")
    send_parser.add_argument("--poll", type=float, default=0.5, help="idle poll, s")
    send_parser.add_argument("--timeout", type=float, default=10.0, help="one request, s")
    send_parser.set_defaults(handler=send)

    status_parser = sub.add_parser("status", help="backlog, lag and dead letters as JSON")
    status_parser.add_argument("--db", help="database URL (default the instance's SQLite)")
    status_parser.set_defaults(handler=status)

    fault_parser = sub.add_parser("fault-run", help="the long fault run against the simulator")
    fault_parser.add_argument("--db", help="database URL (default a new SQLite in --workdir)")
    fault_parser.add_argument("--seconds", type=float, default=120.0)
    fault_parser.add_argument("--workdir", default=".hcp-outbox-fault")
    fault_parser.set_defaults(handler=fault_run)

    crash_parser = sub.add_parser(
        "crash-run", help="keypads rate while the whole collector is killed (SIGKILL)"
    )
    crash_parser.add_argument("--db", help="database URL (default a new SQLite in --workdir)")
    crash_parser.add_argument("--seconds", type=float, default=120.0)
    crash_parser.add_argument("--keypads", type=int, default=6, help="keypads rating at once")
    crash_parser.add_argument("--workdir", default=".hcp-outbox-crash")
    crash_parser.set_defaults(handler=crash_run)

    scan_parser = sub.add_parser("gaming-scan", help="run the gaming rules over the last days")
    scan_parser.add_argument("--db", help="database URL (default the instance's SQLite)")
    scan_parser.add_argument("--days", type=int, default=2, help="1..92 (default 2)")
    scan_parser.set_defaults(handler=gaming_scan)

    gaming_parser = sub.add_parser("gaming-check", help="planted gaming: what each rule finds")
    gaming_parser.add_argument("--db", help="database URL (default a new SQLite in memory)")
    gaming_parser.add_argument("--days", type=int, default=30)
    gaming_parser.add_argument("--seed", type=int, default=1)
    gaming_parser.add_argument("--per-day", type=int, default=24, help="ratings per window a day")
    gaming_parser.set_defaults(handler=gaming_check)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="hcp")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["outbox", *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args) or 0


if __name__ == "__main__":
    raise SystemExit(main())
