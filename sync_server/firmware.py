"""Firmware bundles, their download over HTTP, and rollouts (issue 11).

A bundle is a set of firmware files (the .mpy files `hcp provision --flash`
writes under /lib) with a manifest: its version, the chunk size, and for each
file its path, size, SHA-256 and the SHA-256 of each chunk. The manifest's
own SHA-256 goes to each device inside its `update` command, which the
collector signs with that device's key (docs/protocol.md §3.5, §3.7): so every
chunk a device downloads is checked against a hash its own key vouches for,
and a corrupted or forged chunk is refused before it is written.

Devices download without a login (the firmware is no secret; its integrity
comes from the signed command): ``GET /fw/<version>/manifest.json`` and
``GET /fw/<version>/chunk?path=<path>&n=<index>``, one chunk of at most
MAX_CHUNK bytes per request, so a download is resumable at any chunk.

A rollout sends the bundle to a group of devices (all, a unit's subtree, or
listed ones) or a percentage of it, chosen by a hash of the device id (the
same devices each time for the same version), and can be stopped: commands
not yet delivered are cancelled. Each device's state is kept
(firmware_targets) and shown on ``GET /firmware``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
from pathlib import Path

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from protocols.canonical import dumps
from sync_server import audit, db
from sync_server.auth import requires
from sync_server.db import get_engine
from sync_server.schema_fleet import (
    firmware_bundles,
    firmware_files,
    firmware_rollouts,
    firmware_targets,
    fleet_commands,
)

bp = Blueprint("firmware", __name__)

CHUNK = 4096
MAX_CHUNK = 16384
MAX_FILES = 200
MAX_BUNDLE_BYTES = 8 * 1024 * 1024
VERSION_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
PATH_RE = re.compile(r"^[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*\.(mpy|py|bin|json)$")
DEVICE_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# downloads a minute per device (HCP_FIRMWARE_RATE): a bundle of 40 chunks,
# each tried three times, fits with room; a device that loops is held to it
DOWNLOAD_RATE = 300
MAX_BUCKETS = 10000  # downloaders remembered; the oldest full bucket goes first
DEFAULT_HEALTH_S = 300
# the shortest health deadline a rollout may give (the devices' own floor is
# the same unless provisioned lower: health_min_s); tests lower both
MIN_HEALTH_S = 30
TARGET_LABELS = {
    "waiting": _l("Waiting for the device"),
    "sent": _l("Sent to the device"),
    "accepted": _l("Staged, restarting"),
    "healthy": _l("Running the new firmware"),
    "failed": _l("Refused by the device"),
    "rolled_back": _l("Rolled back"),
    "expired": _l("Expired unanswered"),
    "cancelled": _l("Cancelled before delivery"),
}


class FirmwareError(ValueError):
    pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_manifest(version: str, files: dict[str, bytes], chunk: int = CHUNK) -> dict:
    """The manifest of `files` (path relative to the firmware root -> bytes)."""
    if not VERSION_RE.match(version or ""):
        raise FirmwareError("version: 1..32 characters of A-Z a-z 0-9 . _ -")
    if not 256 <= chunk <= MAX_CHUNK:
        raise FirmwareError(f"chunk: must be 256..{MAX_CHUNK} bytes")
    if not files or len(files) > MAX_FILES:
        raise FirmwareError(f"files: a bundle holds 1..{MAX_FILES} files")
    if sum(len(data) for data in files.values()) > MAX_BUNDLE_BYTES:
        raise FirmwareError(f"files: a bundle holds at most {MAX_BUNDLE_BYTES} bytes")
    entries = []
    for path in sorted(files):
        if not PATH_RE.match(path) or len(path) > 120:
            raise FirmwareError(f"files: {path!r} is not a firmware file path")
        data = files[path]
        chunks = [sha256(data[i : i + chunk]) for i in range(0, len(data), chunk)] or [sha256(b"")]
        entries.append({"path": path, "size": len(data), "sha256": sha256(data), "chunks": chunks})
    return {"version": version, "chunk": chunk, "files": entries}


def files_from_folder(folder) -> dict[str, bytes]:
    """Every file below `folder` (a firmware root: device/, protocols/, ...)."""
    folder = Path(folder)
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def add_bundle(conn, version: str, files: dict[str, bytes], actor: str, chunk: int = CHUNK):
    manifest = make_manifest(version, files, chunk)
    exists = conn.execute(
        select(firmware_bundles.c.version).where(firmware_bundles.c.version == version)
    ).first()
    if exists:
        raise FirmwareError(f"version: bundle {version} exists already (a version never changes)")
    text = dumps(manifest)
    conn.execute(
        firmware_bundles.insert().values(
            version=version,
            manifest=text.decode(),
            manifest_sha256=sha256(text),
            created_at=db.utc_now(),
            created_by=actor,
        )
    )
    conn.execute(
        firmware_files.insert(),
        [{"version": version, "path": path, "data": data} for path, data in files.items()],
    )
    return manifest


def bundle(conn, version: str):
    return conn.execute(
        select(firmware_bundles).where(firmware_bundles.c.version == version)
    ).first()


# --- the devices' download ------------------------------------------------------------


class DownloadLimit:
    """A token bucket per downloader: `per_minute` requests a minute, in a
    burst of as many. take(key) is 0 when the request may go, else the whole
    seconds until it may (the Retry-After). One per process: with several web
    workers each holds its own, so the bound is per worker."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, at]
        self._lock = threading.Lock()

    def take(self, key: str) -> int:
        now = self.clock()
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, at = self._buckets.pop(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - at) * rate)
            wait = 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) / rate))
            self._buckets[key] = [tokens - 1 if not wait else tokens, now]  # newest last
            while len(self._buckets) > MAX_BUCKETS:
                del self._buckets[next(iter(self._buckets))]
            return wait


def _downloader() -> str:
    """Who is downloading: the device the request names (`d`, docs/protocol.md
    §3.7) when it is registered, from the address it comes from; else the
    address alone. A device cannot spend another's budget from elsewhere, and
    one that names ids it is not gets at most one budget per registered id."""
    address = request.remote_addr or "?"
    device_id = request.args.get("d", "")
    if DEVICE_RE.match(device_id):
        with get_engine().connect() as conn:
            known = conn.execute(
                select(db.devices.c.device_id).where(db.devices.c.device_id == device_id)
            ).first()
        if known is not None:
            return address + "/" + device_id
    return address


@bp.before_request
def _limit_downloads():
    if request.endpoint not in ("firmware.manifest_file", "firmware.chunk_file"):
        return None
    limit = current_app.extensions["hcp_firmware_limit"]
    wait = limit.take(_downloader())
    if not wait:
        return None
    text = (
        f"too many downloads: at most {limit.per_minute} a minute per device; "
        f"retry after {wait} s\n"
    )
    return Response(text, 429, headers={"Retry-After": str(wait)})


@bp.get("/fw/<version>/manifest.json")
def manifest_file(version):
    if not VERSION_RE.match(version):
        abort(404)
    with get_engine().connect() as conn:
        row = bundle(conn, version)
    if row is None:
        abort(404)
    return Response(row.manifest.encode(), mimetype="application/json")


@bp.get("/fw/<version>/chunk")
def chunk_file(version):
    path = request.args.get("path", "")
    number = request.args.get("n", "")
    if not VERSION_RE.match(version) or not PATH_RE.match(path) or not number.isdigit():
        return Response("path, n: a file of the manifest and a chunk number\n", 400)
    with get_engine().connect() as conn:
        row = bundle(conn, version)
        if row is None:
            abort(404)
        size = json.loads(row.manifest)["chunk"]
        f = firmware_files.c
        data = conn.execute(select(f.data).where(f.version == version, f.path == path)).scalar()
    if data is None:
        abort(404)
    start = int(number) * size
    if start >= max(len(data), 1):
        return Response("n: beyond the file's last chunk\n", 416)
    return Response(data[start : start + size], mimetype="application/octet-stream")


# --- rollouts -------------------------------------------------------------------------


def _picked(version: str, device_id: str, percent: int) -> bool:
    return int(sha256(f"{version}:{device_id}".encode())[:8], 16) % 100 < percent


def group_devices(conn, group: str) -> list[str]:
    """Device ids of a group: ``all``, ``unit:<id>`` (the unit's subtree, by the
    device's unit or its window's) or ``devices:a,b``."""
    from sync_server import org

    d = db.devices.c
    rows = conn.execute(select(d.device_id, d.org_id, d.window_id).order_by(d.device_id)).all()
    if group == "all":
        return [r.device_id for r in rows]
    if group.startswith("devices:"):
        wanted = [x.strip() for x in group[8:].split(",") if x.strip()]
        known = {r.device_id for r in rows}
        unknown = [x for x in wanted if x not in known]
        if unknown or not wanted:
            raise FirmwareError(f"group: unknown devices {', '.join(unknown) or '(none given)'}")
        return sorted(set(wanted))
    if group.startswith("unit:"):
        unit = group[5:]
        if org.get(conn, "units", unit) is None:
            raise FirmwareError(f"group: no unit {unit!r}")
        units = org.subtree_ids(conn, unit)
        out = []
        for r in rows:
            where = r.org_id or (
                org.placed_in(conn, "windows", r.window_id) if r.window_id else None
            )
            if where in units:
                out.append(r.device_id)
        return out
    raise FirmwareError("group: all, unit:<id> or devices:<id>,<id>")


def start_rollout(
    conn, version, group, percent, actor, base_url, health_s=DEFAULT_HEALTH_S, ttl_s=7 * 86400
) -> int:
    from sync_server import fleet

    row = bundle(conn, version)
    if row is None:
        raise FirmwareError(f"version: no bundle {version!r}")
    if not isinstance(percent, int) or not 1 <= percent <= 100:
        raise FirmwareError("percent: must be 1..100")
    if not isinstance(health_s, int) or not MIN_HEALTH_S <= health_s <= 3600:
        raise FirmwareError(f"health_s: must be {MIN_HEALTH_S}..3600 seconds")
    if not base_url.startswith(("http://", "https://")) or len(base_url) > 200:
        raise FirmwareError("url: the collector's address as devices reach it (http://...)")
    devices = [x for x in group_devices(conn, group) if _picked(version, x, percent)]
    if not devices:
        raise FirmwareError("group: no device is in this group and percentage")
    now = db.utc_now()
    rollout_id = conn.execute(
        firmware_rollouts.insert().values(
            version=version,
            target=json.dumps({"group": group, "percent": percent}),
            state="running",
            health_s=health_s,
            created_at=now,
            created_by=actor,
        )
    ).inserted_primary_key[0]
    args = {
        "version": version,
        "url": base_url.rstrip("/") + f"/fw/{version}/",
        "manifest_sha256": row.manifest_sha256,
        "health_s": health_s,
    }
    statuses = _fw_versions(conn)
    for device_id in devices:
        command_id = fleet.queue_command(
            conn, device_id, "update", args, ttl_s, actor, rollout_id=rollout_id
        )
        conn.execute(
            firmware_targets.insert().values(
                rollout_id=rollout_id,
                device_id=device_id,
                state="waiting",
                command_id=command_id,
                from_version=statuses.get(device_id),
                updated_at=now,
            )
        )
    return rollout_id


def _fw_versions(conn) -> dict:
    d = db.devices.c
    out = {}
    for row in conn.execute(select(d.device_id, d.status)):
        try:
            out[row.device_id] = (json.loads(row.status) or {}).get("fw") if row.status else None
        except ValueError:
            out[row.device_id] = None
    return out


def stop_rollout(conn, rollout_id: int) -> int:
    """Stop a rollout: commands not yet sent are cancelled (a device that has one
    already goes on with it). Returns how many were cancelled."""
    r = firmware_rollouts.c
    rollout = conn.execute(select(firmware_rollouts).where(r.id == rollout_id)).first()
    if rollout is None:
        raise FirmwareError(f"rollout {rollout_id}: no such rollout")
    if rollout.state != "running":
        return 0
    now = db.utc_now()
    conn.execute(
        firmware_rollouts.update().where(r.id == rollout_id).values(state="stopped", stopped_at=now)
    )
    c = fleet_commands.c
    cancelled = conn.execute(
        fleet_commands.update()
        .where(c.rollout_id == rollout_id, c.state == "pending")
        .values(state="cancelled", answered_at=now, result='"rollout stopped"')
    ).rowcount
    t = firmware_targets.c
    conn.execute(
        firmware_targets.update()
        .where(
            t.rollout_id == rollout_id,
            t.state == "waiting",
            t.command_id.in_(
                select(c.id).where(c.rollout_id == rollout_id, c.state == "cancelled")
            ),
        )
        .values(state="cancelled", updated_at=now)
    )
    return cancelled


def _set_target(conn, rollout_id, device_id, state, detail=None):
    t = firmware_targets.c
    conn.execute(
        firmware_targets.update()
        .where(t.rollout_id == rollout_id, t.device_id == device_id)
        .values(state=state, detail=detail, updated_at=db.utc_now())
    )


def command_sent(conn, rollout_id, device_id):
    t = firmware_targets.c
    conn.execute(
        firmware_targets.update()
        .where(t.rollout_id == rollout_id, t.device_id == device_id, t.state == "waiting")
        .values(state="sent", updated_at=db.utc_now())
    )


def command_answered(conn, rollout_id, device_id, state, result) -> None:
    if state == "failed":
        _set_target(conn, rollout_id, device_id, "failed", str(result)[:500])
    elif state == "accepted":
        _set_target(conn, rollout_id, device_id, "accepted", json.dumps(result)[:500])


def came_back(conn, rollout_id, device_id, status) -> None:
    """The device restarted after accepting the update: healthy if it runs the
    new version, rolled back if it runs another."""
    version = conn.execute(
        select(firmware_rollouts.c.version).where(firmware_rollouts.c.id == rollout_id)
    ).scalar()
    fw = status.get("fw")
    if fw == version:
        _set_target(conn, rollout_id, device_id, "healthy", None)
    else:
        _set_target(conn, rollout_id, device_id, "rolled_back", f"came back running {fw}")


def rollouts(conn) -> list[dict]:
    r = firmware_rollouts.c
    out = []
    for row in conn.execute(select(firmware_rollouts).order_by(r.id.desc()).limit(20)):
        t = firmware_targets.c
        targets = [
            dict(x._mapping)
            for x in conn.execute(
                select(firmware_targets).where(t.rollout_id == row.id).order_by(t.device_id)
            )
        ]
        counts: dict[str, int] = {}
        for x in targets:
            counts[x["state"]] = counts.get(x["state"], 0) + 1
        out.append(
            {**row._mapping, "target": json.loads(row.target), "targets": targets, "counts": counts}
        )
    return out


def bundles(conn) -> list[dict]:
    b = firmware_bundles.c
    out = []
    for row in conn.execute(select(firmware_bundles).order_by(b.created_at.desc())):
        manifest = json.loads(row.manifest)
        out.append(
            {
                "version": row.version,
                "files": len(manifest["files"]),
                "bytes": sum(f["size"] for f in manifest["files"]),
                "manifest_sha256": row.manifest_sha256,
                "created_at": row.created_at,
                "created_by": row.created_by,
            }
        )
    return out


# --- pages ----------------------------------------------------------------------------


def init_app(app) -> None:
    from sync_server.web import register_nav

    app.config.setdefault("HCP_FIRMWARE_URL", os.environ.get("HCP_FIRMWARE_URL"))
    app.config.setdefault("HCP_FIRMWARE_RATE", os.environ.get("HCP_FIRMWARE_RATE") or DOWNLOAD_RATE)
    given = app.config["HCP_FIRMWARE_RATE"]
    rate = int(given) if str(given).strip().isdigit() else 0
    if not 1 <= rate <= 100000:
        raise ValueError(f"HCP_FIRMWARE_RATE: must be 1..100000 downloads a minute, got {given!r}")
    app.extensions["hcp_firmware_limit"] = DownloadLimit(rate)
    app.register_blueprint(bp)
    register_nav(app, "firmware.page", _l("Firmware"), "firmware", prefix="firmware.")

    @app.context_processor
    def _firmware_labels():
        return {"TARGET_LABELS": TARGET_LABELS}


def _page(error=None, status=200):
    with get_engine().connect() as conn:
        html = render_template(
            "fleet_firmware.html",
            bundles=bundles(conn),
            rollouts=rollouts(conn),
            error=error,
            default_url=current_app.config.get("HCP_FIRMWARE_URL") or request.host_url,
        )
    return html, status


@bp.get("/firmware")
@requires("firmware")
def page():
    return _page()


@bp.post("/firmware/rollouts")
@requires("firmware")
def rollout_form():
    form = request.form
    try:
        try:
            percent = int(form.get("percent", "100"))
            health_s = int(form.get("health_s", str(DEFAULT_HEALTH_S)))
        except ValueError:
            raise FirmwareError("percent, health_s: must be whole numbers") from None
        with get_engine().begin() as conn:
            rollout_id = start_rollout(
                conn,
                form.get("version", "")[:32],
                form.get("group", "all")[:2000].strip(),
                percent,
                current_user.actor,
                form.get("url", "")[:300].strip() or request.host_url,
                health_s,
            )
            audit.record(
                conn,
                "firmware.rollout",
                f"rollout:{rollout_id}",
                None,
                {"version": form.get("version"), "group": form.get("group"), "percent": percent},
            )
    except FirmwareError as exc:
        return _page(error=str(exc), status=400)
    return redirect(url_for("firmware.page"))


@bp.post("/firmware/rollouts/<int:rollout_id>/stop")
@requires("firmware")
def stop_form(rollout_id):
    try:
        with get_engine().begin() as conn:
            cancelled = stop_rollout(conn, rollout_id)
            audit.record(
                conn, "firmware.stop", f"rollout:{rollout_id}", None, {"cancelled": cancelled}
            )
    except FirmwareError:
        abort(404)
    return redirect(url_for("firmware.page"))
