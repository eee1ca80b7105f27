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

from pathlib import Path


def register(runs) -> None:
    """Add `province` to the runs of `hcp sim`."""
    from simulators import province

    parser = runs.add_parser("province", help="the simulated provincial platform (tests, demo)")
    province.add_arguments(parser)
    parser.set_defaults(handler=province.run)


def start_beside(workdir, port: int = 0):
    """A province in this process for the demo: (province, server, url,
    credential file). The collector gets HCP_PROVINCE_URL=url and
    HCP_PROVINCE_CREDENTIAL=<the file>; server.shutdown() stops it."""
    from simulators import province as simulated

    state = simulated.Province()
    server, url = simulated.serve(state, port=port)
    path = Path(workdir) / "province-credential.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    simulated.load_or_issue(state, str(path), url)
    return state, server, url, path
