"""Tables of device configuration, commands and firmware updates (issue 11).

They live in db.metadata (db.py imports this module), so the migrations test
compares them with migrations/versions/0010_fleet.py. Times are UTC text
(`db.utc_now()`). Nobody but sync_server/fleet*.py and firmware*.py writes them.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, LargeBinary, String, Table, Text

from sync_server.db import metadata

# The desired configuration of a device (docs/protocol.md §3.4): `body` is the
# config message's fields without v, t, version and sig (JSON); `version`
# grows by one with every change. `published_version` is the last version the
# fleet agent put on the device's retained down/config topic; `applied_version`
# is what the device last reported in its status (`config_version`), and
# `applied_since` when it began to report that value.
fleet_configs = Table(
    "fleet_configs",
    metadata,
    Column("device_id", String(32), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("updated_at", String(32), nullable=False),
    Column("updated_by", String(80), nullable=False),
    Column("published_version", Integer),
    Column("published_at", String(32)),
    Column("applied_version", Integer),
    Column("applied_since", String(32)),
)

# A command for a device (docs/protocol.md §3.5), held until the device is
# online. state: pending -> sent -> accepted (reboot, factory_reset, update:
# the device said yes and restarts) -> done | failed; pending or sent ->
# expired at `expires_at`; pending -> cancelled (a stopped rollout, a removed
# device). `result` is the device's answer (JSON) or the reason.
fleet_commands = Table(
    "fleet_commands",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("device_id", String(32), nullable=False),
    Column("cmd", String(16), nullable=False),
    Column("args", Text, nullable=False),
    Column("state", String(12), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("created_by", String(80), nullable=False),
    Column("expires_at", String(32), nullable=False),
    Column("sent_at", String(32)),
    Column("sends", Integer, nullable=False),
    Column("answered_at", String(32)),
    Column("result", Text),
    Column("boot_id", String(32)),  # the device's boot when it accepted a restart
    Column("rollout_id", Integer),
    Index("ix_fleet_commands_device", "device_id", "state"),
)

# A firmware bundle: its manifest (JSON: version, chunk size, files with size,
# SHA-256 and the SHA-256 of every chunk) and each file's bytes.
firmware_bundles = Table(
    "firmware_bundles",
    metadata,
    Column("version", String(32), primary_key=True),
    Column("manifest", Text, nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("created_by", String(80), nullable=False),
)

firmware_files = Table(
    "firmware_files",
    metadata,
    Column("version", String(32), primary_key=True),
    Column("path", String(200), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

# A rollout of a bundle to a group (all devices, a unit's, or listed ones) or
# a percentage of it; state running | stopped.
firmware_rollouts = Table(
    "firmware_rollouts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", String(32), nullable=False),
    Column("target", Text, nullable=False),  # JSON: {"group": ..., "percent": n}
    Column("state", String(12), nullable=False),
    Column("health_s", Integer, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("created_by", String(80), nullable=False),
    Column("stopped_at", String(32)),
)

# One device in a rollout. state: waiting -> sent -> accepted (staged,
# restarting) -> healthy (reported the new version) | failed (refused, with
# the reason) | rolled_back (came back on the old version) | expired |
# cancelled (the rollout was stopped before the device took it).
firmware_targets = Table(
    "firmware_targets",
    metadata,
    Column("rollout_id", Integer, primary_key=True),
    Column("device_id", String(32), primary_key=True),
    Column("state", String(12), nullable=False),
    Column("command_id", String(40)),
    Column("from_version", String(32)),
    Column("detail", Text),
    Column("updated_at", String(32), nullable=False),
)

# Ratings known to be lost, with the cause (issue 11: "not as silence"). Written
# when `hcp provision --reprovision` puts a new key on a board that lost its
# store (wiped, or a new board in place of a broken one) while the collector's
# last status from the old board named seqs it never received: seqs
# first_seq..last_seq were made and are gone with the board. The new board's
# seqs start after last_seq, so they are never used again.
fleet_seq_gaps = Table(
    "fleet_seq_gaps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(32), nullable=False),
    Column("first_seq", Integer, nullable=False),
    Column("last_seq", Integer, nullable=False),
    Column("cause", Text, nullable=False),
    Column("noted_at", String(32), nullable=False),
    Column("noted_by", String(80), nullable=False),
)
Index("ix_fleet_seq_gaps_device", fleet_seq_gaps.c.device_id, fleet_seq_gaps.c.first_seq)
