"""`hcp sim province`: the simulated provincial platform (simulators/province.py).

    hcp sim province --port 8090 --credential-file instance/province.json

serves the province's two interfaces (service events, evaluations) on
--port, checks them as strictly as docs/reporting-upward.md describes, and
writes the credential it issued to the collector into --credential-file
(kept across restarts: an existing file is taken again). --mode, --delay and
--error-rate make it slow, unavailable or failing for fault runs; a running
one changes mode with POST /_sim/mode.
"""

from __future__ import annotations


def register(runs) -> None:
    """Add `province` to the runs of `hcp sim`."""
    from simulators import province

    parser = runs.add_parser("province", help="the simulated provincial platform (tests, demo)")
    province.add_arguments(parser)
    parser.set_defaults(handler=province.run)
