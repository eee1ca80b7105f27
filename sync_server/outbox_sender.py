"""The sender: pushes the outbox to the provincial platform (issue 13).

One loop (`Sender.run_once`, repeated by `Sender.run`):

1. take the lease (table `outbox_sender`): one sender at a time, so the
   order holds even with several collectors; a killed sender's lease runs
   out after HCP_OUTBOX_LEASE_S;
2. take the oldest pending rows in outbox order; build the payload of those
   that have none (province_map.build) and keep it, so every later attempt
   sends the same bytes and no time ever changes; a row that cannot be put
   in the province's shape is set aside as `unmapped` with the reason;
3. hold back a rating whose service event is still waiting (an event is
   always reported before its ratings);
4. post the events, then the ratings, each request signed with SM2 under
   the credential the province issued;
5. keep each answer: accepted or duplicate → acknowledged (the first
   acknowledgement time is kept); refused → a dead letter with the
   province's reason. A failed request (no answer, a 5xx, garbage, a refused
   credential) changes no row but its attempt count: the sender backs off
   (HCP_OUTBOX_BACKOFF_S doubling up to HCP_OUTBOX_BACKOFF_MAX_S) and tries
   the same rows again, and its state says what went wrong.

Killed between the province's answer and the commit, it sends the same
payloads again and the province answers "duplicate": acknowledged once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import logging
import os
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid

from gmssl import sm2
from sqlalchemy import bindparam, func, or_, select, update

from protocols.levels import MappingError
from sync_server import db, province_map
from sync_server import outbox as outbox_rows
from sync_server.schema_outbox import (
    ACKED,
    DEAD,
    HELD,
    OVERDUE,
    PENDING,
    UNMAPPED,
    outbox,
    outbox_sender,
)

log = logging.getLogger(__name__)

EVENTS_PATH = "/api/v1/service-events"
RATINGS_PATH = "/api/v1/evaluations"
SETTINGS = {
    "HCP_PROVINCE_URL": None,  # the province's base URL; no URL: nothing is sent
    "HCP_PROVINCE_CREDENTIAL": None,  # the credential file the province issued (JSON)
    "HCP_PROVINCE_TIMEOUT_S": 10.0,
    "HCP_OUTBOX_BATCH": 200,
    "HCP_OUTBOX_BACKOFF_S": 1.0,
    "HCP_OUTBOX_BACKOFF_MAX_S": 60.0,
    "HCP_OUTBOX_POLL_S": 0.5,
    "HCP_OUTBOX_LEASE_S": 15.0,
    # a 差评 held for its reason longer than this is shown as overdue (still held)
    "HCP_OUTBOX_REASON_WAIT_DAYS": 3.0,
}
MAX_REASON = 500


class SendFailed(Exception):
    """A request that got no usable answer: `state` is what the page shows."""

    def __init__(self, state: str, detail: str):
        super().__init__(detail)
        self.state = state


def load_credential(path: str) -> dict:
    with open(path, encoding="utf-8") as source:
        credential = json.load(source)
    for field in ("app_id", "private_key", "public_key"):
        if not isinstance(credential.get(field), str):
            raise ValueError(f"{path}: {field} missing")
    return credential


class ProvinceClient:
    """Signed JSON posts to the province (docs/reporting-upward.md: signing)."""

    def __init__(self, url: str, credential: dict, timeout_s: float = 10.0):
        self.url = url.rstrip("/")
        self.credential = credential
        self.timeout_s = timeout_s
        self.signer = sm2.CryptSM2(credential["private_key"], credential["public_key"])

    def headers(self, path: str, body: bytes) -> dict:
        app_id = self.credential["app_id"]
        timestamp = str(int(time.time()))
        nonce = secrets.token_hex(16)
        head = f"POST {path}\n{app_id}\n{timestamp}\n{nonce}\n".encode()
        text = head + hashlib.sha256(body).hexdigest().encode()
        signature = self.signer.sign_with_sm3(text, secrets.token_hex(32))
        return {
            "Content-Type": "application/json",
            "X-HCP-App-Id": app_id,
            "X-HCP-Timestamp": timestamp,
            "X-HCP-Nonce": nonce,
            "X-HCP-Signature": signature,
        }

    def post(self, path: str, items: list[dict]) -> list[dict]:
        """The province's per-item results, in the order sent; SendFailed otherwise."""
        body = json.dumps({"items": items}, ensure_ascii=False).encode()
        request = urllib.request.Request(
            self.url + path, data=body, headers=self.headers(path, body), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status, raw = response.status, response.read(4 * 1024 * 1024)
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read(64 * 1024)
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise SendFailed("unreachable", f"no answer from the province: {exc}") from None
        return read_answer(status, raw, items)


def read_answer(status: int, raw: bytes, items: list[dict]) -> list[dict]:
    """The province's answer to `items`: its per-item results in the order
    sent, or SendFailed saying what was wrong with it."""
    try:
        answer = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        answer = None
    message = answer.get("msg", "") if isinstance(answer, dict) else ""
    message = message[:MAX_REASON] if isinstance(message, str) else ""
    if status == 401:
        raise SendFailed("credential", f"the province refused the credential: {message}")
    if status != 200:
        raise SendFailed("error", f"HTTP {status}: {message or 'no message'}")
    if answer is None:
        raise SendFailed("garbage", f"HTTP {status}: the answer is not JSON ({len(raw)} bytes)")
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list) or len(results) != len(items):
        raise SendFailed("garbage", "the answer has no result for each item")
    for result in results:
        if not isinstance(result, dict) or result.get("status") not in (
            "accepted",
            "duplicate",
            "refused",
        ):
            raise SendFailed("garbage", "a result without a known status")
    for item, result in zip(items, results, strict=True):
        expected = item.get("evaluationId") or f"{item['projectNo']}/{item['serviceNo']}"
        if result.get("id") != expected:
            raise SendFailed("garbage", "the answer's results do not name the items sent")
    silent = [r for r in results if r["status"] == "refused" and not _reason(r)]
    if silent:
        # a refusal must say why to be acted on: the rows stay queued
        raise SendFailed(
            "no_reason", f"the province refused {len(silent)} item(s) without a reason"
        )
    return results


def _reason(result: dict) -> str:
    reason = result.get("reason")
    return reason.strip() if isinstance(reason, str) else ""


def _utc(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Sender:
    def __init__(self, engine, settings: dict | None = None, name: str = "main", client=None):
        self.engine = engine
        self.settings = SETTINGS | province_map.DEFAULTS | (settings or {})
        self.name = name
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.client = client
        if client is None and self.settings["HCP_PROVINCE_URL"]:
            credential = self.settings["HCP_PROVINCE_CREDENTIAL"]
            if isinstance(credential, str):
                credential = load_credential(credential)
            self.client = ProvinceClient(
                self.settings["HCP_PROVINCE_URL"],
                credential,
                self.settings["HCP_PROVINCE_TIMEOUT_S"],
            )
        # the turn must outlast one request, or a second sender could start
        # while this one waits for an answer (it is renewed before each request)
        self.lease_s = max(
            float(self.settings["HCP_OUTBOX_LEASE_S"]),
            float(self.settings["HCP_PROVINCE_TIMEOUT_S"]) + 2.0,
        )
        self.failures = 0
        self.not_before = 0.0  # monotonic time of the next attempt after a failure

    # --- the lease and the state the page shows ----------------------------------
    def _lease(self, conn) -> bool:
        now = dt.datetime.now(dt.UTC)
        until = _utc(now + dt.timedelta(seconds=self.lease_s))
        s = outbox_sender.c
        if conn.execute(select(s.name).where(s.name == self.name)).first() is None:
            conn.execute(
                db.insert_ignoring_duplicates(self.engine, outbox_sender, "name"),
                [{"name": self.name, "state": "ok", "at": _utc(now)}],
            )
        taken = conn.execute(
            update(outbox_sender)
            .where(
                s.name == self.name,
                or_(s.holder.is_(None), s.holder == self.holder, s.lease_until < _utc(now)),
            )
            .values(holder=self.holder, lease_until=until)
        ).rowcount
        return taken == 1

    def _note(self, state: str, detail: str | None, acked: bool = False) -> None:
        values = {"state": state, "detail": detail, "at": db.utc_now()}
        if acked:
            values["last_ack_at"] = values["at"]
        with self.engine.begin() as conn:
            conn.execute(
                update(outbox_sender)
                .where(outbox_sender.c.name == self.name, outbox_sender.c.holder == self.holder)
                .values(**values)
            )

    def release(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(outbox_sender)
                .where(outbox_sender.c.name == self.name, outbox_sender.c.holder == self.holder)
                .values(holder=None, lease_until=None)
            )

    # --- one round ------------------------------------------------------------------
    def _take(self) -> list[dict] | None:
        """The rows to send now, payloads built; None without the lease.

        The oldest pending rows, and the pending service events of the
        ratings among them (an event registered after its rating comes along
        with it, ahead of it); a rating whose event cannot be sent (unmapped)
        stays back."""
        o = outbox.c
        columns = (o.id, o.kind, o.ref, o.case_no, o.service_no, o.payload)
        with self.engine.begin() as conn:
            if not self._lease(conn):
                return None
            outbox_rows.release_held(conn, self.settings["HCP_OUTBOX_REASON_WAIT_DAYS"])
            rows = [
                dict(row._mapping)
                for row in conn.execute(
                    select(*columns)
                    .where(o.state == PENDING)
                    .order_by(o.id)
                    .limit(self.settings["HCP_OUTBOX_BATCH"])
                )
            ]
            taken = {r["id"] for r in rows}
            refs = sorted(
                {
                    f"{r['case_no']}/{r['service_no']}"
                    for r in rows
                    if r["kind"] == "rating" and r["case_no"] and r["service_no"]
                }
                - {r["ref"] for r in rows if r["kind"] == "event"}
            )
            if refs:
                rows += [
                    dict(row._mapping)
                    for row in conn.execute(
                        select(*columns)
                        .where(o.kind == "event", o.ref.in_(refs), o.state == PENDING)
                        .order_by(o.id)
                    )
                    if row.id not in taken
                ]
            unbuilt = [row for row in rows if row["payload"] is None]
            cache = province_map.prefetch(conn, unbuilt, self.settings) if unbuilt else {}
            ready, frozen = [], []
            for row in rows:
                if row["payload"] is None:
                    try:
                        payload = province_map.build(conn, row, self.settings, cache)
                    except (MappingError, ValueError) as exc:
                        conn.execute(
                            update(outbox)
                            .where(o.id == row["id"])
                            .values(state=UNMAPPED, reason=str(exc)[:MAX_REASON])
                        )
                        continue
                    row["payload"] = json.dumps(payload, ensure_ascii=False, sort_keys=True)
                    frozen.append({"row_id": row["id"], "frozen": row["payload"]})
                ready.append(row)
            if frozen:  # kept at once for every later attempt
                conn.execute(
                    update(outbox)
                    .where(o.id == bindparam("row_id"))
                    .values(payload=bindparam("frozen")),
                    frozen,
                )
            return self._hold_waiting_ratings(conn, ready)

    def _hold_waiting_ratings(self, conn, rows: list[dict]) -> list[dict]:
        """Ratings whose service event is stored but cannot go now stay for
        later, and so do ratings behind a rating of the same event that is
        held for its reason (an appended rating needs its first one there)."""
        o = outbox.c
        cases = sorted({r["case_no"] for r in rows if r["kind"] == "rating" and r["case_no"]})
        first_held = {}
        if cases:
            first_held = {
                (case, service): first
                for case, service, first in conn.execute(
                    select(o.case_no, o.service_no, func.min(o.id))
                    .where(o.kind == "rating", o.state.in_((HELD, OVERDUE)), o.case_no.in_(cases))
                    .group_by(o.case_no, o.service_no)
                )
            }
        if first_held:
            rows = [
                r
                for r in rows
                if r["kind"] == "event"
                or r["id"] < first_held.get((r["case_no"], r["service_no"]), r["id"] + 1)
            ]
        in_batch = {r["ref"] for r in rows if r["kind"] == "event"}
        refs = {
            f"{r['case_no']}/{r['service_no']}"
            for r in rows
            if r["kind"] == "rating" and r["case_no"] and r["service_no"]
        } - in_batch
        waiting = set()
        if refs:
            waiting = set(
                conn.execute(
                    select(o.ref).where(
                        o.kind == "event", o.ref.in_(sorted(refs)), o.state.in_((PENDING, UNMAPPED))
                    )
                ).scalars()
            )
        return [
            r
            for r in rows
            if r["kind"] == "event" or f"{r['case_no']}/{r['service_no']}" not in waiting
        ]

    def _apply(self, rows: list[dict], results: list[dict]) -> int:
        now = db.utc_now()
        acked = 0
        o = outbox.c
        with self.engine.begin() as conn:
            for row, result in zip(rows, results, strict=True):
                if result["status"] in ("accepted", "duplicate"):
                    acked += 1
                    flags = result.get("flags") if isinstance(result.get("flags"), list) else []
                    conn.execute(
                        update(outbox)
                        .where(o.id == row["id"])
                        .values(
                            state=ACKED,
                            acked_at=func.coalesce(o.acked_at, now),
                            attempts=o.attempts + 1,
                            province_ref=str(result.get("receipt") or "")[:64] or None,
                            flags=json.dumps([str(f)[:40] for f in flags[:10]]) if flags else None,
                            last_error=None,
                            reason=None,  # a refusal before a retry stays in the audit log
                        )
                    )
                else:
                    reason = _reason(result)
                    conn.execute(
                        update(outbox)
                        .where(o.id == row["id"])
                        .values(state=DEAD, reason=reason[:MAX_REASON], attempts=o.attempts + 1)
                    )
        return acked

    def _failed(self, rows: list[dict], failure: SendFailed) -> None:
        self.failures += 1
        base = self.settings["HCP_OUTBOX_BACKOFF_S"]
        wait = min(self.settings["HCP_OUTBOX_BACKOFF_MAX_S"], base * 2 ** (self.failures - 1))
        self.not_before = time.monotonic() + wait
        retry_at = _utc(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=wait))
        with self.engine.begin() as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_([r["id"] for r in rows]))
                .values(
                    attempts=outbox.c.attempts + 1,
                    last_error=str(failure)[:MAX_REASON],
                    next_try_at=retry_at,
                )
            )
        self._note(failure.state, str(failure)[:MAX_REASON])
        log.warning("outbox: %s (next attempt in %.1f s)", failure, wait)

    def run_once(self) -> dict:
        """One round; {"sent", "acked", "failed"}: failed is the failure state or None."""
        done = {"sent": 0, "acked": 0, "failed": None}
        if self.client is None or time.monotonic() < self.not_before:
            return done
        rows = self._take()
        if not rows:
            return done
        for kind, path in (("event", EVENTS_PATH), ("rating", RATINGS_PATH)):
            part = [r for r in rows if r["kind"] == kind]
            if not part:
                continue
            if kind == "rating" and done["sent"]:
                with self.engine.begin() as conn:  # renew the turn for the second request
                    if not self._lease(conn):
                        return done
            try:
                results = self.client.post(path, [json.loads(r["payload"]) for r in part])
            except SendFailed as failure:
                self._failed(part, failure)
                done["failed"] = failure.state
                return done
            done["sent"] += len(part)
            done["acked"] += self._apply(part, results)
        self.failures = 0
        self._note("ok", None, acked=done["acked"] > 0)
        return done

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                done = self.run_once()
            except Exception:  # a database hiccup must not end the sender; it tries again
                log.exception("outbox: a round failed")
                done = {"sent": 0}
            if not done["sent"]:
                stop.wait(self.settings["HCP_OUTBOX_POLL_S"])
        try:
            self.release()
        except Exception:
            log.exception("outbox: could not release the lease")


def settings_from(config) -> dict:
    """The sender's and the mapping's settings out of an app config (or any
    mapping): HCP_PROVINCE_* and HCP_OUTBOX_* keys, defaults for the rest."""
    keys = {**SETTINGS, **province_map.DEFAULTS}
    return {key: config.get(key, default) for key, default in keys.items()}


def start(engine, settings: dict | None = None):
    """Run a sender in a daemon thread; returns (thread, stop event), or
    (None, None) when no province URL is configured."""
    sender = Sender(engine, settings)
    if sender.client is None:
        return None, None
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop,), name="hcp-outbox", daemon=True)
    thread.start()
    return thread, stop
