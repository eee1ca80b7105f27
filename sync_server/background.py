"""The collector's work besides the ingest and the pages, started by `hcp
collector serve` and by the demo.

- the outbox sender to the province, when ``HCP_PROVINCE_URL`` is set
  (sync_server/outbox_sender.py; it takes a lease, so several collectors
  may run it and one sends);
- SMS invitations, when ``HCP_SMS_GATEWAY_URL`` is set, every
  ``HCP_SMS_DELIVER_S`` seconds (sync_server/sms.py);
- alerts of new 差评 cases to the units' duty contacts, every
  ``HCP_CASE_ALERT_S`` seconds, by ``HCP_CASE_ALERT_SENDER``
  (sync_server/cases_alerts.py);
- the month-end rankings, checked every ``HCP_RANKINGS_TICK_S`` seconds
  (sync_server/rankings_data.py: the first check after a month is over
  stores its snapshot);
- the scan for evidence of gaming over the last two days, every
  ``HCP_GAMING_SCAN_S`` seconds (sync_server/gaming.py; flags go to the
  supervisors, nothing is hidden or changed);
- the fleet agent (device configs and commands), when the collector is told
  its MQTT login (sync_server/fleet_agent.py; `hcp fleet agent` runs it
  alone).

Each periodic job has its own thread: an exception is logged and the job
tries again at its next turn, so one failing part never stops another or
the ingest. `stop()` ends them all.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

DEFAULTS = {
    "HCP_SMS_DELIVER_S": 5.0,
    "HCP_CASE_ALERT_S": 30.0,
    "HCP_RANKINGS_TICK_S": 600.0,
    "HCP_GAMING_SCAN_S": 900.0,
}


class Periodic:
    """`job()` now and then every `seconds`, in a daemon thread, until stopped."""

    def __init__(self, name: str, seconds: float, job):
        self.name, self.seconds, self.job = name, float(seconds), job
        self.runs = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"hcp-{name}", daemon=True)

    def start(self) -> Periodic:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.job()
            except Exception:  # noqa: BLE001 - logged; the next turn tries again
                self.errors += 1
                log.exception(
                    "background job %s failed; it runs again in %.0f s", self.name, self.seconds
                )
            self.runs += 1
            self._stop.wait(self.seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(10)


@dataclass
class Background:
    jobs: dict[str, object] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.jobs)

    def stop(self) -> None:
        for job in self.jobs.values():
            try:
                job.stop()
            except Exception:  # noqa: BLE001 - stopping the others matters more
                log.exception("stopping a background job failed")
        self.jobs.clear()


def setting(app, key: str):
    return app.config.get(key, DEFAULTS.get(key))


def start(app, fleet: tuple[str, int, str | None] | None = None) -> Background:
    """Start what `app`'s configuration asks for (see the module's doc).
    `fleet` (host, port, password or None) starts the fleet agent too, as the
    broker's `hcp-fleet` user (broker-auth gives it the collector's password)."""
    from sync_server import cases_alerts, gaming, outbox_sender, rankings_data, sms, sms_gateways

    engine = app.extensions["hcp_engine"]
    running = Background()
    try:
        if app.config.get("HCP_PROVINCE_URL"):
            settings = {
                k: v
                for k, v in app.config.items()
                if k.startswith(("HCP_OUTBOX_", "HCP_PROVINCE_"))
            }
            thread, stop = outbox_sender.start(engine, settings)
            if thread is not None:
                running.jobs["outbox"] = _ThreadStopper(thread, stop)
        gateway = sms_gateways.from_config(app.config)
        if gateway is not None:
            key = _phone_key(app)
            zone = app.config["HCP_TIMEZONE"]
            running.jobs["sms"] = Periodic(
                "sms",
                setting(app, "HCP_SMS_DELIVER_S"),
                lambda: sms.deliver(engine, gateway, key, zone),
            ).start()
        sender = cases_alerts.sender_from_config(app.config.get("HCP_CASE_ALERT_SENDER"))
        running.jobs["case-alerts"] = Periodic(
            "case-alerts",
            setting(app, "HCP_CASE_ALERT_S"),
            lambda: cases_alerts.deliver(engine, sender),
        ).start()
        running.jobs["rankings"] = Periodic(
            "rankings", setting(app, "HCP_RANKINGS_TICK_S"), lambda: rankings_data.tick(engine)
        ).start()
        thresholds = {k: v for k, v in app.config.items() if k.startswith("HCP_GAMING_")}
        running.jobs["gaming"] = Periodic(
            "gaming",
            setting(app, "HCP_GAMING_SCAN_S"),
            lambda: gaming.run_recent(engine, 2, thresholds),
        ).start()
        if fleet is not None:
            from sync_server.fleet_agent import FleetAgent

            host, port, password = fleet
            running.jobs["fleet"] = FleetAgent(engine, host, port, password=password).start()
    except Exception:
        running.stop()
        raise
    return running


def _phone_key(app) -> bytes:
    from sync_server import phones

    with app.app_context():
        return phones.app_key()


class _ThreadStopper:
    def __init__(self, thread: threading.Thread, stop: threading.Event):
        self.thread, self.event = thread, stop

    def stop(self) -> None:
        self.event.set()
        self.thread.join(10)
