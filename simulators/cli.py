"""`hcp sim …`: simulator runs for tests and proofs."""

from __future__ import annotations

import tempfile

from rich.console import Console
from rich.table import Table

from hcp.broker import MosquittoBroker


def register(commands) -> None:
    sim = commands.add_parser("sim", help="simulator runs (for tests and proofs)")
    runs = sim.add_subparsers(dest="sim_command", metavar="RUN")
    runs.required = True
    fault = runs.add_parser("fault", help="keypads rating through broker, collector, link and "
                            "power faults; then count every (device, seq)")  # fmt: skip
    fault.add_argument("--devices", type=int, default=10)
    fault.add_argument("--duration", type=float, default=60, help="seconds of faults (default 60)")
    fault.add_argument("--fault-every", type=float, default=1.5, help="seconds between faults")
    fault.add_argument("--broker", choices=["mosquitto", "amqtt"], default=None,
                       help="default: mosquitto where installed, else amqtt")  # fmt: skip
    fault.add_argument("--seed", type=int, default=None)
    fault.add_argument("--workdir", default=None, help="keep the run's files here")
    fault.set_defaults(handler=run_fault)


def run_fault(args) -> int:
    from simulators.fault import FaultRun

    console = Console(highlight=False)
    kind = args.broker or ("mosquitto" if MosquittoBroker.available() else "amqtt")
    with tempfile.TemporaryDirectory(prefix="hcp-fault-") as tmp:
        console.print(f"fault run: {args.devices} keypads, {args.duration:.0f} s, {kind} "
                      "(simulated devices, for tests)")  # fmt: skip
        run = FaultRun(args.workdir or tmp, devices=args.devices, duration=args.duration,
                       broker=kind, fault_every=args.fault_every, seed=args.seed)  # fmt: skip
        report = run.run()
    table = Table(title="fault run")
    table.add_column("what")
    table.add_column("count", justify="right")
    for kind_name, count in sorted(report.faults.items()):
        table.add_row(f"faults: {kind_name}", str(count))
    table.add_row("records made on the keypads", str(report.made))
    table.add_row("records stored at the collector", str(report.stored))
    table.add_row("lost (made, not stored)", str(len(report.missing)))
    table.add_row("stored but never made", str(len(report.unexpected)))
    table.add_row("per-level count mismatches", str(len(report.count_mismatches)))
    table.add_row("quarantined", str(report.quarantined))
    table.add_row("keypads drained", "yes" if report.drained else "no")
    console.print(table)
    for line in report.missing[:20] + report.unexpected[:20] + report.count_mismatches:
        console.print(f"  {line}")
    console.print("PASS: nothing lost, nothing twice" if report.ok else "FAIL")
    return 0 if report.ok else 1
