"""Device configuration as desired state, held commands and device removal (issue 11).

A feature module (sync_server/features.py). The collector keeps, per device:

- a desired configuration with a version that grows by one with every change
  (window, staff on duty, tag set, screen texts, opening hours). The fleet
  agent (sync_server/fleet_agent.py) puts it, signed with the device's key, on
  the device's retained `down/config` topic; the device reports the version it
  applied in its status (`config_version`); the difference is drift, shown
  with the time it began;
- commands (reboot, identify, resync, factory reset, firmware update) held
  until the device is online, with an expiry, and their results;
- removal: the device's key goes, the broker's password file is written anew
  and Mosquitto reloaded (sync_server/broker_auth.py), which refuses the login
  and closes its open connection.

Pages: ``GET /fleet`` (devices, drift, pending commands), ``GET
/fleet/<id>`` (desired config, commands), ``POST /fleet/<id>/config``,
``POST /fleet/<id>/command``, ``POST /fleet/<id>/remove`` (admins).
Firmware bundles and rollouts: firmware.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets

from flask import (
    Blueprint,
    abort,
    current_app,
    has_request_context,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import func, select

from protocols import messages
from sync_server import audit, broker_auth, db, tags
from sync_server.auth import requires
from sync_server.db import get_engine
from sync_server.schema_fleet import (
    firmware_targets,
    fleet_commands,
    fleet_configs,
    fleet_seq_gaps,
)

bp = Blueprint("fleet", __name__)

# what a person may send from the page (update goes through a rollout)
PAGE_COMMANDS = ("reboot", "identify", "sync_now", "factory_reset")
COMMAND_LABELS = {
    "reboot": _l("Reboot"),
    "identify": _l("Identify (show the device id)"),
    "sync_now": _l("Resync now"),
    "factory_reset": _l("Factory reset"),
    "update": _l("Firmware update"),
    "set_time": _l("Set the clock"),
}
STATE_LABELS = {
    "pending": _l("Waiting for the device"),
    "sent": _l("Sent to the device"),
    "accepted": _l("Accepted, restarting"),
    "done": _l("Carried out"),
    "failed": _l("Failed on the device"),
    "expired": _l("Expired unanswered"),
    "cancelled": _l("Cancelled before delivery"),
}
# commands the device answers before it restarts: done once it is back
RESTARTING = ("reboot", "factory_reset", "update")
OPEN_STATES = ("pending", "sent", "accepted")
DEFAULT_TTL_S = 24 * 3600
MAX_TTL_S = 30 * 24 * 3600
RESEND_AFTER_S = 60  # a sent command unanswered this long goes again on the next connect
HOURS_RE = re.compile(r"^([1-7])(?:-([1-7]))?\s+([0-2]\d:[0-5]\d)-([0-2]\d:[0-5]\d)$")
MAX_HOURS_ROWS = 28
MAX_TEXTS = 20
# the roster a keypad gets: the staff of its window's unit (工号, name), which
# it checks a window PC's sign-in against (device/service.py)
MAX_ROSTER = 64
# a keypad closes its connection on an inbound packet over 4,096 bytes
# (device/mqtt.py MAX_PACKET): the signed config and its topic must fit
MAX_CONFIG_BYTES = 3800


class FleetError(ValueError):
    """A refused change, with the field it concerns in the message."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _text(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)


# --- desired configuration -----------------------------------------------------------


def parse_hours(text: str) -> list[list]:
    """Opening hours from lines like ``1-5 08:30-12:00`` (days 1 = Monday … 7)
    into rows [first_day, last_day, "HH:MM", "HH:MM"]."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        match = HOURS_RE.match(line)
        if not match:
            raise FleetError(f"hours: line {number}: must look like 1-5 08:30-12:00")
        first, last, start, end = match.groups()
        last = last or first
        if not (start < end <= "24:00") or int(first) > int(last) or start[:2] > "23":
            raise FleetError(f"hours: line {number}: days or times out of order")
        rows.append([int(first), int(last), start, end])
    if len(rows) > MAX_HOURS_ROWS:
        raise FleetError(f"hours: at most {MAX_HOURS_ROWS} lines")
    return rows


def hours_text(rows) -> str:
    return "\n".join(
        (f"{a}" if a == b else f"{a}-{b}") + f" {start}-{end}" for a, b, start, end in rows or ()
    )


def parse_texts(text: str) -> dict[str, str]:
    """Screen texts from ``key=text`` lines."""
    texts = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise FleetError(f"texts: line {number}: must be key=text")
        texts[key.strip()] = value.strip()
    if len(texts) > MAX_TEXTS:
        raise FleetError(f"texts: at most {MAX_TEXTS} keys")
    return texts


def texts_text(texts) -> str:
    return "\n".join(f"{key}={value}" for key, value in sorted((texts or {}).items()))


def build_body(conn, window_id=None, staff_id=None, tag_version=None, texts=None, hours=None):
    """The config fields (docs/protocol.md §3.4) from what a person chose; raises
    FleetError naming the field."""
    body: dict = {}
    if window_id:
        if (
            conn.execute(select(db.windows.c.id).where(db.windows.c.id == window_id)).first()
            is None
        ):
            raise FleetError(f"window_id: no window {window_id!r}")
        body["window_id"] = window_id
        unit = _window_unit(conn, window_id)
        if unit:
            body["org_id"] = unit
            roster = _roster(conn, unit)
            if roster:
                body["roster"] = roster
    if staff_id:
        row = conn.execute(select(db.staff).where(db.staff.c.id == staff_id)).first()
        if row is None:
            raise FleetError(f"staff_id: no staff member {staff_id!r}")
        body.update(staff_id=row.id, staff_name=row.name, staff_no=row.id)
    if tag_version:
        rows = tags.tags_of(conn, tag_version, "offline")
        known = {v["version"] for v in tags.versions(conn)}
        if tag_version not in known:
            raise FleetError(f"tag_version: no tag set {tag_version!r}")
        body["content_version"] = tag_version
        body["tags"] = [[r["level"], r["code"], r["text"]] for r in rows]
    if texts:
        body["texts"] = texts
    if hours:
        body["hours"] = hours
    try:
        messages.check(messages.config(1, **body), messages.CONFIG)
    except messages.MessageError as exc:
        raise FleetError(str(exc)) from None
    size = config_size(body)
    if size > MAX_CONFIG_BYTES:
        raise FleetError(
            f"config: {size} bytes; a keypad takes at most {MAX_CONFIG_BYTES} "
            "(fewer tags, texts or staff in the window's unit)"
        )
    return body


def config_size(body: dict) -> int:
    """Bytes of the config message with the largest version number."""
    return len(messages.encode(messages.config(2**31 - 1, **body)))


def _window_unit(conn, window_id):
    from sync_server import org

    return org.placed_in(conn, "windows", window_id)


def _roster(conn, unit_id):
    """[工号, name] of the staff in the unit now; FleetError beyond MAX_ROSTER."""
    from sync_server import org

    rows = [[m["id"], m["name"]] for m in org.members(conn, "staff", {unit_id})]
    if len(rows) > MAX_ROSTER:
        raise FleetError(
            f"roster: unit {unit_id!r} has {len(rows)} staff members; "
            f"a keypad holds at most {MAX_ROSTER}"
        )
    return rows


# --- the roster follows the staff table -----------------------------------------------
#
# A desired config made for a window carries the window's unit (org_id) and
# that unit's staff (roster), as they were when it was saved. When staff join,
# leave, are renamed or move, or a window moves (sync_server/org.py calls
# follow_org in the same transaction), every such config is derived again from
# the organisation as it is now: a changed body is a new desired version, set
# by whoever changed the staff and audited like any config change, which the
# agent puts on the device's retained down/config topic.
#
# A roster the keypad cannot hold (more than MAX_ROSTER staff, or a config
# over MAX_CONFIG_BYTES) does not refuse the staff change: the organisation is
# the record of who works where, which the figures and the cases follow, and
# one hall's keypad memory must not keep a person in the wrong unit or refuse
# a district's staff file. The device's desired config is left as it was and
# the fleet pages show the problem with the unit (held_roster) until the unit
# is small enough or the config is changed by hand.


def org_now(conn) -> tuple[dict, dict, dict]:
    """(window id -> its unit now, unit id -> its roster now [[工号, name], ...],
    staff id -> name now), of what is not retired."""
    from sync_server import org

    window_units = {w["id"]: w["unit"] for w in org.members(conn, "windows")}
    rosters: dict[str, list] = {}
    names = {}
    for member in org.members(conn, "staff"):
        names[member["id"]] = member["name"]
        if member["unit"] is not None:
            rosters.setdefault(member["unit"], []).append([member["id"], member["name"]])
    return window_units, rosters, names


def derive(body: dict, now: tuple[dict, dict, dict]) -> tuple[dict, dict | None]:
    """The body with its window's unit and that unit's roster as they are now
    (`now` from org_now), and the problem that keeps it from a keypad, or None:
    {"unit", "staff"} (too many staff) or {"unit", "bytes"} (too big). A body
    without a window, or whose window is in no unit now, is returned as it is.
    The staff member on duty keeps their place; a new name of theirs is taken."""
    window_units, rosters, names = now
    unit = window_units.get(body.get("window_id"))
    if unit is None:
        return body, None
    new = {k: v for k, v in body.items() if k not in ("org_id", "roster")}
    if names.get(body.get("staff_id")) and "staff_name" in body:
        new["staff_name"] = names[body["staff_id"]]
    new["org_id"] = unit
    roster = rosters.get(unit, [])
    if len(roster) > MAX_ROSTER:
        return new, {"unit": unit, "staff": len(roster)}
    if roster:
        new["roster"] = roster
    size = config_size(new)
    if size > MAX_CONFIG_BYTES:
        return new, {"unit": unit, "bytes": size}
    return new, None


def problem_text(problem: dict) -> str:
    """A held roster's problem in words, for the audit log and the pages."""
    if "staff" in problem:
        return _(
            "the roster of unit %(unit)s was not sent: it has %(n)s staff members; "
            "a keypad holds at most %(max)s",
            unit=problem["unit"],
            n=problem["staff"],
            max=MAX_ROSTER,
        )
    return _(
        "the roster of unit %(unit)s was not sent: the configuration would be "
        "%(n)s bytes; a keypad takes at most %(max)s",
        unit=problem["unit"],
        n=problem["bytes"],
        max=MAX_CONFIG_BYTES,
    )


def _actor() -> str:
    if has_request_context() and current_user.is_authenticated:
        return current_user.actor
    return "system"


def follow_org(conn, units=(), windows=(), staff=(), cause: str = "") -> list[dict]:
    """After a change of the staff of `units`, of the place of `windows` or
    of the names of `staff`: the desired config of every device made for a
    window of one of those units (its org_id) or for one of those windows, or
    with one of those staff on duty, derived again (derive).
    A changed body becomes a new version by the actor of the change, audited
    (fleet.config, with `cause`); a body a keypad cannot take is left as it
    is and audited (fleet.config.held). Returns the held ones:
    [{"device_id", "unit", "problem": {...}}]."""
    units, windows, staff = set(units) - {None}, set(windows) - {None}, set(staff) - {None}
    if not units and not windows and not staff:
        return []
    # locked, in one order, before the organisation is read: a staff change
    # committed meanwhile by another session is then seen, not overwritten
    # (PostgreSQL; SQLite has one writer at a time)
    rows = [
        (row.device_id, json.loads(row.body))
        for row in conn.execute(
            select(fleet_configs.c.device_id, fleet_configs.c.body)
            .order_by(fleet_configs.c.device_id)
            .with_for_update()
        )
    ]
    rows = [
        (device_id, body)
        for device_id, body in rows
        if body.get("window_id")
        and (
            body.get("org_id") in units
            or body.get("window_id") in windows
            or body.get("staff_id") in staff
        )
    ]
    if not rows:
        return []
    now, actor, held = org_now(conn), _actor(), []
    for device_id, body in rows:
        new, problem = derive(body, now)
        before = desired(conn, device_id)
        if problem is not None:
            held.append({"device_id": device_id, "unit": problem["unit"], "problem": problem})
            audit.record(
                conn,
                "fleet.config.held",
                f"device:{device_id}",
                {"version": before["version"]},
                {"problem": problem, "cause": cause},
            )
            continue
        version = set_config(conn, device_id, new, actor)
        if version != before["version"]:
            audit.record(
                conn,
                "fleet.config",
                f"device:{device_id}",
                {"version": before["version"]},
                {"version": version, **new, "cause": cause},
            )
    return held


def held_rosters(conn) -> dict[str, dict]:
    """device id -> the problem that keeps its roster from following the staff
    table now (see derive), for every device with a desired config."""
    now, out = None, {}
    for row in conn.execute(select(fleet_configs.c.device_id, fleet_configs.c.body)):
        body = json.loads(row.body)
        if not body.get("window_id"):
            continue
        now = now or org_now(conn)
        _new, problem = derive(body, now)
        if problem is not None:
            out[row.device_id] = problem
    return out


def desired(conn, device_id: str, lock: bool = False) -> dict | None:
    """The device's desired config row (body parsed), or None. lock: the row
    stays locked until the transaction ends (PostgreSQL), so a version is
    never computed from a row another session is changing."""
    query = select(fleet_configs).where(fleet_configs.c.device_id == device_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        return None
    out = dict(row._mapping)
    out["body"] = json.loads(row.body)
    return out


def set_config(conn, device_id: str, body: dict, actor: str) -> int:
    """Make `body` the device's desired config; returns its version (unchanged
    when the body is the same as the desired one)."""
    current = desired(conn, device_id, lock=True)
    now = db.utc_now()
    if current is not None and current["body"] == body:
        return current["version"]
    version = 1 if current is None else current["version"] + 1
    text = json.dumps(body, ensure_ascii=False, sort_keys=True)
    if current is None:
        conn.execute(
            fleet_configs.insert().values(
                device_id=device_id, version=version, body=text, updated_at=now, updated_by=actor
            )
        )
    else:
        conn.execute(
            fleet_configs.update()
            .where(fleet_configs.c.device_id == device_id)
            .values(version=version, body=text, updated_at=now, updated_by=actor)
        )
    return version


def config_message(row: dict) -> dict:
    return messages.config(row["version"], **row["body"])


def drift(row: dict | None, status: dict | None) -> dict:
    """desired, applied and since when they differ (None: in step)."""
    if row is None:
        applied = (status or {}).get("config_version")
        return {"desired": None, "applied": applied, "drift": False, "since": None}
    applied = row.get("applied_version")
    if applied is None and status:
        applied = status.get("config_version")
    in_step = applied == row["version"]
    since = None
    if not in_step:
        # the later of: when this version was set, when the device began to
        # report what it reports now (it may have dropped back, a factory reset)
        since = max(t for t in (row["updated_at"], row.get("applied_since")) if t)
    return {"desired": row["version"], "applied": applied, "drift": not in_step, "since": since}


# --- commands -------------------------------------------------------------------------


def new_command_id() -> str:
    return "c-" + secrets.token_hex(8)


def queue_command(
    conn, device_id: str, cmd: str, args: dict | None, ttl_s: int, actor: str, rollout_id=None
) -> str:
    """Hold a command for the device until it is online, for `ttl_s` seconds."""
    if cmd not in messages.COMMANDS or cmd in ("status", "evaluate"):
        raise FleetError(f"cmd: not a command for the fleet: {cmd!r}")
    if not isinstance(ttl_s, int) or not 60 <= ttl_s <= MAX_TTL_S:
        raise FleetError(f"expires: must be 60..{MAX_TTL_S} seconds")
    args = dict(args or {})
    if cmd == "factory_reset":
        args["device_id"] = device_id  # the device's own confirmation
    command_id = new_command_id()
    try:
        messages.check(messages.command(command_id, cmd, args), messages.CMD)
    except messages.MessageError as exc:
        raise FleetError(str(exc)) from None
    now = _now()
    conn.execute(
        fleet_commands.insert().values(
            id=command_id,
            device_id=device_id,
            cmd=cmd,
            args=json.dumps(args, ensure_ascii=False, sort_keys=True),
            state="pending",
            created_at=_text(now),
            created_by=actor,
            expires_at=_text(now + dt.timedelta(seconds=ttl_s)),
            sends=0,
            rollout_id=rollout_id,
        )
    )
    return command_id


def commands_of(conn, device_id: str, limit: int = 50) -> list[dict]:
    c = fleet_commands.c
    rows = conn.execute(
        select(fleet_commands)
        .where(c.device_id == device_id)
        .order_by(c.created_at.desc(), c.id)
        .limit(limit)
    )
    out = []
    for row in rows:
        item = dict(row._mapping)
        item["args"] = json.loads(row.args)
        item["result"] = json.loads(row.result) if row.result else None
        out.append(item)
    return out


def due_commands(conn, device_id: str, now: dt.datetime | None = None) -> list[dict]:
    """Commands to send to a device that just said it is online: pending ones
    and sent ones left unanswered (the device answers a repeat again, it does
    not run it twice), oldest first, not expired."""
    now = now or _now()
    c = fleet_commands.c
    rows = conn.execute(
        select(fleet_commands)
        .where(c.device_id == device_id, c.state.in_(("pending", "sent")))
        .order_by(c.created_at, c.id)
    )
    due = []
    for row in rows:
        if row.expires_at <= _text(now):
            continue
        sent = _parse(row.sent_at)
        if row.state == "sent" and sent and (now - sent).total_seconds() < RESEND_AFTER_S:
            continue
        due.append({"id": row.id, "cmd": row.cmd, "args": json.loads(row.args)})
    return due


def mark_sent(conn, command_id: str) -> None:
    c = fleet_commands.c
    row = conn.execute(select(c.sends).where(c.id == command_id)).first()
    conn.execute(
        fleet_commands.update()
        .where(c.id == command_id, c.state.in_(("pending", "sent")))
        .values(state="sent", sent_at=db.utc_now(), sends=(row.sends if row else 0) + 1)
    )


def expire(conn, now: dt.datetime | None = None) -> int:
    """Commands not answered by their expiry: `expired` (a restart accepted but
    never seen done stays `accepted` until then too)."""
    now = now or _now()
    c = fleet_commands.c
    expired = conn.execute(
        fleet_commands.update()
        .where(c.state.in_(OPEN_STATES), c.expires_at <= _text(now))
        .values(state="expired", answered_at=_text(now))
    ).rowcount
    t = firmware_targets.c
    conn.execute(
        firmware_targets.update()
        .where(
            t.state.in_(("waiting", "sent", "accepted")),
            t.command_id.in_(select(c.id).where(c.state == "expired")),
        )
        .values(state="expired", updated_at=_text(now))
    )
    return expired


MAX_RESULT = 2000  # characters of a device's answer kept (a device may send any size)


def _kept(result) -> str:
    """The answer as JSON, or, when longer than MAX_RESULT, its beginning as a
    JSON string (still JSON: the pages read it back)."""
    text = json.dumps(result, ensure_ascii=False)
    if len(text) <= MAX_RESULT:
        return text
    return json.dumps(text[: MAX_RESULT - 40] + f"… ({len(text)} characters)", ensure_ascii=False)


def record_result(conn, device_id: str, msg: dict, status: dict | None) -> str | None:
    """A device's cmdres: the command's new state, or None when it is not one of
    this device's open commands (a forgery, an old repeat)."""
    c = fleet_commands.c
    row = conn.execute(
        select(fleet_commands).where(c.id == msg["id"], c.device_id == device_id)
    ).first()
    if row is None or row.state not in ("pending", "sent"):
        return None
    result = msg.get("result")
    if not msg["ok"]:
        state = "failed"
    elif row.cmd in RESTARTING:
        state = "accepted"
    else:
        state = "done"
    boot_id = None
    if state == "accepted":
        # the boot that is about to restart: the device names it (update), else
        # the last status the agent saw
        named = result.get("boot_id") if isinstance(result, dict) else None
        boot_id = named if isinstance(named, str) else (status or {}).get("boot_id")
    conn.execute(
        fleet_commands.update()
        .where(c.id == row.id)
        .values(
            state=state,
            answered_at=db.utc_now(),
            result=_kept(result),
            boot_id=boot_id,
        )
    )
    if row.rollout_id is not None:
        from sync_server import firmware

        firmware.command_answered(conn, row.rollout_id, device_id, state, result)
    return state


def observe_status(conn, device_id: str, status: dict, live: bool) -> list[str]:
    """A device's status as the agent sees it: applied config version (and since
    when), restarts that completed accepted commands, rollout health. Returns
    the ids of commands now done."""
    done = []
    now = db.utc_now()
    row = desired(conn, device_id)
    applied = status.get("config_version")
    if row is not None and status.get("online") and applied != row.get("applied_version"):
        conn.execute(
            fleet_configs.update()
            .where(fleet_configs.c.device_id == device_id)
            .values(applied_version=applied, applied_since=now)
        )
    if not (live and status.get("online")):
        return done
    c = fleet_commands.c
    boot = status.get("boot_id")
    uptime = status.get("uptime_ms")
    for cmd in conn.execute(
        select(fleet_commands).where(c.device_id == device_id, c.state == "accepted")
    ):
        # a new boot, and one that began after the answer: a command queued while
        # the device was away is answered on connect, before that boot's first
        # status, so "another boot id than the last one seen" alone is not enough
        answered = _parse(cmd.answered_at)
        since = (_now() - answered).total_seconds() if answered else None
        began_after = uptime is None or since is None or uptime / 1000 < since
        if boot and cmd.boot_id != boot and began_after:
            conn.execute(
                fleet_commands.update().where(c.id == cmd.id).values(state="done", answered_at=now)
            )
            done.append(cmd.id)
            if cmd.rollout_id is not None:
                from sync_server import firmware

                firmware.came_back(conn, cmd.rollout_id, device_id, status)
    return done


# --- removal --------------------------------------------------------------------------


def remove_device(conn, device_id: str) -> dict | None:
    """Forget a device's key (it can no longer sign, nor log in once the
    broker's password file is rewritten); its ratings stay. Open commands are
    cancelled, its desired config dropped. Returns what was removed, or None."""
    d = db.devices.c
    row = conn.execute(
        select(d.device_id, d.kind, d.name, d.org_id, d.window_id).where(d.device_id == device_id)
    ).first()
    if row is None:
        return None
    conn.execute(db.devices.delete().where(d.device_id == device_id))
    c = fleet_commands.c
    conn.execute(
        fleet_commands.update()
        .where(c.device_id == device_id, c.state.in_(OPEN_STATES))
        .values(state="cancelled", answered_at=db.utc_now(), result='"device removed"')
    )
    conn.execute(fleet_configs.delete().where(fleet_configs.c.device_id == device_id))
    return dict(row._mapping)


# --- ratings lost with a board ---------------------------------------------------------

# a status claiming more lost ratings than this is not believed (a board holds
# at most max_pending, 3,000 by default, unacknowledged): no gap is noted and
# the new board asks the collector (down/seq) as for any lost store
MAX_KNOWN_GAP = 100_000


def seq_gaps(conn, device_id: str) -> list[dict]:
    g = fleet_seq_gaps.c
    rows = conn.execute(
        select(fleet_seq_gaps).where(g.device_id == device_id).order_by(g.first_seq)
    ).all()
    return [dict(r._mapping, count=r.last_seq - r.first_seq + 1) for r in rows]


def highest_lost(conn, device_id: str) -> int:
    """The highest seq noted lost with a board (0: none). A seq up to it is
    never to be used again: the collector's answer to a board that lost its
    store (ingest's down/seq, docs/protocol.md §3.6) should not go below it."""
    g = fleet_seq_gaps.c
    top = conn.execute(select(func.max(g.last_seq)).where(g.device_id == device_id)).scalar()
    return int(top or 0)


def lost_with_board(conn, device_id: str, actor: str) -> dict | None:
    """A re-provisioned board that lost its store (wiped, or a new board in
    place of a broken one): the seqs the old board's last status named
    (`last_seq`) above the highest the collector holds were made and are gone
    with it. They are noted as a known gap with its cause (fleet_seq_gaps,
    once), and the new board must start after them, so they are never used
    again. Returns the store state the board starts from, {"next_seq",
    "counts" (the stored per level), "gap": [first, last] or None}, or None
    when nothing is known lost (the board then asks, docs/protocol.md §3.6)."""
    from protocols.record import MAX_SEQ
    from sync_server.ingest import seqs_held

    held, counts = seqs_held(conn, device_id)
    floor = max(held, highest_lost(conn, device_id))
    row = conn.execute(
        select(db.devices.c.status, db.devices.c.last_seen).where(
            db.devices.c.device_id == device_id
        )
    ).first()
    status = _status_dict(row.status if row else None)
    reported = status.get("last_seq")
    gap = None
    if (
        isinstance(reported, int)
        and not isinstance(reported, bool)
        and floor < reported < MAX_SEQ
        and reported - floor <= MAX_KNOWN_GAP
    ):
        gap = [floor + 1, reported]
        conn.execute(
            fleet_seq_gaps.insert().values(
                device_id=device_id,
                first_seq=gap[0],
                last_seq=gap[1],
                cause="lost_with_board",
                noted_at=db.utc_now(),
                noted_by=actor[:80],
            )
        )
        floor = reported
    if floor <= held:
        return None
    return {"next_seq": floor + 1, "counts": counts, "gap": gap}


def _status_dict(text) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def revoke_on_broker(engine, auth_dir, pid=None, pid_file=None) -> str:
    """Write the broker's password file anew from the devices left and reload
    Mosquitto; returns what was done, in a line for people."""
    devices = db.device_keys(engine)
    broker_auth.rewrite_device_logins(auth_dir, devices)
    target = broker_auth.broker_pid(pid, pid_file)
    if target is None:
        return f"{auth_dir}/passwd rewritten ({len(devices)} devices); reload Mosquitto now"
    from hcp.broker import reload_mosquitto

    reload_mosquitto(target, auth_dir)  # returns once Mosquitto has read passwd again
    return f"{auth_dir}/passwd rewritten ({len(devices)} devices); Mosquitto {target} reloaded"


# --- pages ----------------------------------------------------------------------------


def init_app(app) -> None:
    from sync_server import firmware
    from sync_server.web import register_nav

    app.config.setdefault("HCP_BROKER_AUTH_DIR", os.environ.get("HCP_BROKER_AUTH_DIR"))
    app.config.setdefault("HCP_BROKER_PID_FILE", os.environ.get("HCP_BROKER_PID_FILE"))
    app.register_blueprint(bp)
    register_nav(app, "fleet.overview_page", _l("Fleet"), "fleet", prefix="fleet.")
    firmware.init_app(app)

    @app.context_processor
    def _fleet_labels():
        return {
            "COMMAND_LABELS": COMMAND_LABELS,
            "COMMAND_STATE_LABELS": STATE_LABELS,
            "roster_problem": problem_text,
        }


def _statuses(conn) -> dict:
    d = db.devices.c
    out = {}
    for row in conn.execute(
        select(d.device_id, d.kind, d.name, d.window_id, d.last_seen, d.status).order_by(
            d.device_id
        )
    ):
        try:
            status = json.loads(row.status) if row.status else None
        except (ValueError, RecursionError):
            status = None
        if not isinstance(status, dict):  # a device's status may be any JSON at all
            status = None
        out[row.device_id] = {**row._mapping, "status": status}
    return out


def overview(conn) -> list[dict]:
    configs = {
        row.device_id: {**row._mapping, "body": json.loads(row.body)}
        for row in conn.execute(select(fleet_configs))
    }
    c = fleet_commands.c
    held = held_rosters(conn)
    open_counts: dict[str, int] = {}
    for (device_id,) in conn.execute(select(c.device_id).where(c.state.in_(OPEN_STATES))):
        open_counts[device_id] = open_counts.get(device_id, 0) + 1
    items = []
    for device_id, device in _statuses(conn).items():
        status = device["status"] or {}
        items.append(
            {
                "device_id": device_id,
                "kind": device["kind"],
                "name": device["name"],
                "window_id": device["window_id"],
                "last_seen": device["last_seen"],
                "online": bool(status.get("online")) if status else None,
                "fw": status.get("fw"),
                "open_commands": open_counts.get(device_id, 0),
                "held": held.get(device_id),
                **drift(configs.get(device_id), status),
            }
        )
    return items


DONE_NOTES = {
    "revoked": _l("Removed; the broker refuses the device from now on."),
    "removed_by_hand": _l(
        "Removed. The broker's files are not configured here: rewrite them and reload the broker."
    ),
    "broker_failed": _l("Removed, but the broker was not updated: see the audit log."),
}


@bp.get("/fleet")
@requires("fleet")
def overview_page():
    with get_engine().connect() as conn:
        items = overview(conn)
    note = DONE_NOTES.get(request.args.get("done", ""))
    return render_template("fleet.html", items=items, note=note)


def _device_or_404(conn, device_id):
    device = _statuses(conn).get(device_id)
    if device is None:
        abort(404)
    return device


def _device_page(device_id, error=None, status=200):
    with get_engine().connect() as conn:
        device = _device_or_404(conn, device_id)
        row = desired(conn, device_id)
        body = row["body"] if row else {}
        page = render_template(
            "fleet_device.html",
            device=device,
            desired=row,
            body=body,
            hours=hours_text(body.get("hours")),
            texts=texts_text(body.get("texts")),
            drift=drift(row, device["status"]),
            held=held_rosters(conn).get(device_id),
            commands=commands_of(conn, device_id),
            seq_gaps=seq_gaps(conn, device_id),
            windows=[w["id"] for w in _windows(conn)],
            staff=_staff(conn),
            tag_versions=[v["version"] for v in tags.versions(conn)],
            page_commands=PAGE_COMMANDS,
            error=error,
            may_remove=current_user.can("firmware"),
        )
    return page, status


def _windows(conn):
    return [
        dict(r._mapping) for r in conn.execute(select(db.windows.c.id).order_by(db.windows.c.id))
    ]


def _staff(conn):
    s = db.staff.c
    return [
        dict(r._mapping)
        for r in conn.execute(select(s.id, s.name).where(s.retired_at.is_(None)).order_by(s.id))
    ]


@bp.get("/fleet/<device_id>")
@requires("fleet")
def device_page(device_id):
    return _device_page(device_id)


@bp.post("/fleet/<device_id>/config")
@requires("fleet")
def config_form(device_id):
    form = request.form
    engine = get_engine()
    try:
        with engine.begin() as conn:
            _device_or_404(conn, device_id)
            # locked before the roster is read: a staff change at the same
            # moment (follow_org) is waited for, then seen
            desired(conn, device_id, lock=True)
            body = build_body(
                conn,
                window_id=form.get("window_id", "")[:64].strip() or None,
                staff_id=form.get("staff_id", "")[:64].strip() or None,
                tag_version=form.get("tag_version", "")[:32].strip() or None,
                texts=parse_texts(form.get("texts", "")[:8000]),
                hours=parse_hours(form.get("hours", "")[:4000]),
            )
            before = desired(conn, device_id)
            version = set_config(conn, device_id, body, current_user.actor)
            if before is None or before["version"] != version:
                audit.record(
                    conn,
                    "fleet.config",
                    f"device:{device_id}",
                    None if before is None else {"version": before["version"]},
                    {"version": version, **body},
                )
    except FleetError as exc:
        return _device_page(device_id, error=str(exc), status=400)
    return redirect(url_for("fleet.device_page", device_id=device_id))


@bp.post("/fleet/<device_id>/command")
@requires("fleet")
def command_form(device_id):
    form = request.form
    cmd = form.get("cmd", "")
    try:
        ttl = int(form.get("expires_h", "24")) * 3600
    except ValueError:
        return _device_page(
            device_id, error="expires_h: must be a whole number of hours", status=400
        )
    args = {}
    if cmd == "identify" and form.get("seconds"):
        try:
            args["seconds"] = int(form["seconds"])
        except ValueError:
            return _device_page(device_id, error="seconds: must be a whole number", status=400)
    try:
        if cmd not in PAGE_COMMANDS:
            raise FleetError(f"cmd: must be one of {', '.join(PAGE_COMMANDS)}")
        if cmd == "identify" and "seconds" in args and not 1 <= args["seconds"] <= 600:
            raise FleetError("seconds: must be 1..600")
        with get_engine().begin() as conn:
            _device_or_404(conn, device_id)
            command_id = queue_command(conn, device_id, cmd, args, ttl, current_user.actor)
            audit.record(
                conn, "fleet.command", f"device:{device_id}", None, {"id": command_id, "cmd": cmd}
            )
    except FleetError as exc:
        return _device_page(device_id, error=str(exc), status=400)
    return redirect(url_for("fleet.device_page", device_id=device_id))


@bp.post("/fleet/<device_id>/remove")
@requires("firmware")
def remove_form(device_id):
    if request.form.get("confirm") != device_id:
        return _device_page(device_id, error=_("Type the device id to confirm."), status=400)
    engine = get_engine()
    with engine.begin() as conn:
        removed = remove_device(conn, device_id)
        if removed is None:
            abort(404)
        audit.record(conn, "fleet.remove", f"device:{device_id}", removed, None)
    done, detail = "removed_by_hand", None
    auth_dir = current_app.config.get("HCP_BROKER_AUTH_DIR")
    if auth_dir:
        try:
            detail = revoke_on_broker(
                engine, auth_dir, pid_file=current_app.config.get("HCP_BROKER_PID_FILE")
            )
            done = "revoked"
        except (OSError, ValueError) as exc:
            done, detail = "broker_failed", str(exc)
    with engine.begin() as conn:
        audit.record(conn, "fleet.revoke", f"device:{device_id}", None, {done: detail})
    return redirect(url_for("fleet.overview_page", done=done))
