"""Mosquitto's password file, ACL and listener config for the production broker.

Every device logs in as its own device id with a password derived from its
key (protocols.sign.mqtt_password), and may only publish under its own
`up/` topics and read its own `down/` topics; the collector logs in as its
own user and is the only one that may read `up/` and write `down/`. With
these files a device can neither pose as another nor read another's acks.
The fleet agent (sync_server/fleet_agent.py) logs in as `hcp-fleet` with the
collector's password: it reads statuses and command results and writes
configs and commands, nothing else.

Revocation (docs/fleet.md): `rewrite_device_logins` writes the password file
anew from the devices the database holds, keeping the collectors' and the
fleet agent's lines as they are, and `reload` sends Mosquitto SIGHUP. Measured
on Mosquitto 2.0.11: the reload refuses the removed or re-keyed login from
then on and closes its open connection; nobody else is disconnected.

The listener config (`hcp.conf`, for Mosquitto's `include_dir`) also turns on
`use_username_as_clientid`: Mosquitto then replaces the client id a client
sends with its user name, so a device that connects with the collector's (or
another device's) client id gets its own session and cannot take over, or
disconnect, anyone else's. That option belongs to a listener and an
`include_dir` file does not continue the listener of the file that includes
it (measured with Mosquitto 2.0.11: the option then lands on the default
listener, which opens port 1883), so the file declares the listener itself.
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import tempfile
from pathlib import Path

from protocols import sign

# Mosquitto 2's "$7$" password hashes: PBKDF2-HMAC-SHA512, 101 rounds, 12-byte salt
_ROUNDS = 101
COLLECTOR_USER = "hcp-collector"
FLEET_USER = "hcp-fleet"
CONF_NAME = "hcp.conf"
DEFAULT_PORT = 1883


def password_hash(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ROUNDS)
    return f"$7${_ROUNDS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


DEVICE_ACL = """
# every other user is a device, named by its device id
pattern write hcp/v1/dev/%u/up/#
pattern read hcp/v1/dev/%u/down/#
"""


def collector_users(count: int = 1) -> list[str]:
    """The collectors' MQTT users: hcp-collector, then hcp-collector-2 … for
    collectors that share the work (each its own login, so each its own
    session under use_username_as_clientid)."""
    if not 1 <= count <= 64:
        raise ValueError("collectors: must be 1..64")
    return [COLLECTOR_USER] + [f"{COLLECTOR_USER}-{n}" for n in range(2, count + 1)]


def fleet_acl_block() -> str:
    return (
        f"user {FLEET_USER}\n"
        "topic read hcp/v1/dev/+/up/status\ntopic read hcp/v1/dev/+/up/cmdres\n"
        "topic write hcp/v1/dev/+/down/config\ntopic write hcp/v1/dev/+/down/cmd\n"
    )


def acl_text(collectors: int = 1, fleet: bool = False) -> str:
    blocks = [
        f"user {user}\ntopic read hcp/v1/dev/+/up/#\ntopic write hcp/v1/dev/+/down/#\n"
        for user in collector_users(collectors)
    ]
    if fleet:
        blocks.append(fleet_acl_block())
    return "# written by hcp collector broker-auth\n" + "\n".join(blocks) + DEVICE_ACL


ACL = acl_text()


def listener_config(
    passwd: Path, acl: Path, port: int = DEFAULT_PORT, bind_address: str | None = None
) -> str:
    """The text of `hcp.conf`: the listener and everything that locks it down."""
    if not 1 <= port <= 65535:
        raise ValueError(f"listener port {port} is not 1..65535")
    if bind_address is not None and (not bind_address or len(bind_address.split()) != 1):
        raise ValueError(f"bind address {bind_address!r} is not one word")
    listener = f"listener {port}" + (f" {bind_address}" if bind_address else "")
    return (
        "# written by hcp collector broker-auth; load it with `include_dir` (it declares\n"
        "# its own listener: do not declare this port again in mosquitto.conf)\n"
        f"{listener}\n"
        "# a client's id is its user name: nobody can take over another's session\n"
        "use_username_as_clientid true\n"
        "allow_anonymous false\n"
        "# the largest batch the contract allows is well under this; anything larger\n"
        "# is refused by the broker before it reaches the collector\n"
        f"max_packet_size {MAX_PACKET}\n"
        "# QoS 1 messages the broker lets wait unacknowledged per client: the collector\n"
        "# commits what waits in one transaction before it acknowledges (group commit)\n"
        f"max_inflight_messages {MAX_INFLIGHT}\n"
        "# send each packet at once: an ack to a keypad otherwise waits about 40 ms\n"
        "# behind TCP's delayed acknowledgements (applies to the whole broker)\n"
        "set_tcp_nodelay true\n"
        f"password_file {passwd}\n"
        f"acl_file {acl}\n"
    )


MAX_PACKET = 1 << 20  # bytes; 200 records of the contract's largest shape fit
MAX_INFLIGHT = 1000  # Mosquitto's default, 20, would cap the collector's groups at 20


def write_files(
    folder,
    devices,
    collector_password: str,
    port: int = DEFAULT_PORT,
    bind_address: str | None = None,
    collectors: int = 1,
    fleet: bool = False,
) -> tuple[Path, Path, Path]:
    """Write `passwd`, `acl` and `hcp.conf` into `folder`; returns their paths.

    `devices` are (device_id, key_hex) pairs; `port` and `bind_address` make
    the listener line (no address: every interface); `collectors` users for
    collectors that share the work (collector_users), with one password;
    `fleet` adds the fleet agent's login (FLEET_USER, the same password).
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    services = collector_users(collectors) + ([FLEET_USER] if fleet else [])
    lines = [f"{user}:{password_hash(collector_password)}" for user in services]
    lines += _device_lines(devices)
    passwd = folder / "passwd"
    passwd.write_text("\n".join(lines) + "\n")
    passwd.chmod(0o600)
    acl = folder / "acl"
    acl.write_text(acl_text(collectors, fleet))
    conf = folder / CONF_NAME
    conf.write_text(listener_config(passwd, acl, port, bind_address))
    return passwd, acl, conf


def _device_lines(devices) -> list[str]:
    return [
        f"{device_id}:{password_hash(sign.mqtt_password(bytes.fromhex(key_hex)))}"
        for device_id, key_hex in devices
    ]


def _service_user(name: str) -> bool:
    return name == FLEET_USER or name in collector_users(64)


def rewrite_device_logins(folder, devices) -> list[str]:
    """Replace the device lines of `folder`/passwd with `devices` ((device_id,
    key_hex) pairs: what the database holds now), keeping the collectors' and
    the fleet agent's lines as they are (their password is not needed). The
    file is replaced by a rename, so Mosquitto never reads half of it. Returns
    the device ids now allowed in. A device id that would look like a service
    login is refused (it would take that login's place)."""
    folder = Path(folder)
    passwd = folder / "passwd"
    if not passwd.is_file():
        raise FileNotFoundError(
            f"{passwd}: no password file; write it first with hcp collector broker-auth --out"
        )
    devices = list(devices)
    for device_id, _key in devices:
        if _service_user(device_id):
            raise ValueError(f"device id {device_id!r} is a service login's name")
    kept = [
        line
        for line in passwd.read_text().splitlines()
        if line.strip() and _service_user(line.split(":", 1)[0])
    ]
    if not kept:
        raise ValueError(f"{passwd}: holds no collector login; write it with broker-auth")
    fd, tmp = tempfile.mkstemp(prefix=".passwd-", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(kept + _device_lines(devices)) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, passwd)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return [device_id for device_id, _key in devices]


def broker_pid(pid=None, pid_file=None) -> int | None:
    """The running Mosquitto's process id: given, or read from its pid file."""
    if pid is not None:
        return int(pid)
    if pid_file:
        text = Path(pid_file).read_text().strip()
        if not text.isdigit():
            raise ValueError(f"{pid_file}: does not hold a process id")
        return int(text)
    return None


def reload(pid: int) -> None:
    """Make Mosquitto read its password file and ACL again (SIGHUP)."""
    if pid <= 1:
        raise ValueError(f"broker pid {pid}: not a broker's process id")
    os.kill(pid, signal.SIGHUP)


def _replace(path: Path, text: str, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + "-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def add_fleet_login(folder, password: str) -> None:
    """Give the fleet agent its login in a folder broker-auth wrote without it:
    its line in `passwd` (replaced if there) and its block in `acl`; each file
    replaced by a rename. Mosquitto needs a reload afterwards."""
    folder = Path(folder)
    passwd, acl = folder / "passwd", folder / "acl"
    if not passwd.is_file() or not acl.is_file():
        raise FileNotFoundError(
            f"{folder}: no passwd and acl; write them first with hcp collector broker-auth --out"
        )
    if len(password) < 12:
        raise ValueError("password: must be at least 12 characters")
    lines = [
        line
        for line in passwd.read_text().splitlines()
        if line.strip() and line.split(":", 1)[0] != FLEET_USER
    ]
    lines.append(f"{FLEET_USER}:{password_hash(password)}")
    _replace(passwd, "\n".join(lines) + "\n", 0o600)
    text = acl.read_text()
    if f"user {FLEET_USER}\n" not in text:
        # user blocks go before the device patterns, as acl_text writes them
        head, sep, tail = text.partition(DEVICE_ACL)
        text = (
            head.rstrip("\n") + "\n\n" + fleet_acl_block() + sep + tail
            if sep
            else (text.rstrip("\n") + "\n\n" + fleet_acl_block())
        )
        _replace(acl, text, 0o644)
