"""Mosquitto's password and ACL files for the production broker.

Every device logs in as its own device id with a password derived from its
key (protocols.sign.mqtt_password), and may only publish under its own
`up/` topics and read its own `down/` topics; the collector logs in as its
own user and is the only one that may read `up/` and write `down/`. With
these files a device can neither pose as another nor read another's acks.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from protocols import sign

# Mosquitto 2's "$7$" password hashes: PBKDF2-HMAC-SHA512, 101 rounds, 12-byte salt
_ROUNDS = 101
COLLECTOR_USER = "hcp-collector"


def password_hash(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ROUNDS)
    return f"$7${_ROUNDS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


ACL = f"""# written by hcp collector broker-auth
user {COLLECTOR_USER}
topic read hcp/v1/dev/+/up/#
topic write hcp/v1/dev/+/down/#

# every other user is a device, named by its device id
pattern write hcp/v1/dev/%u/up/#
pattern read hcp/v1/dev/%u/down/#
"""


def write_files(folder, devices, collector_password: str) -> tuple[Path, Path]:
    """Write `passwd` and `acl` into `folder`; devices are (device_id, key_hex) pairs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{COLLECTOR_USER}:{password_hash(collector_password)}"]
    for device_id, key_hex in devices:
        lines.append(f"{device_id}:{password_hash(sign.mqtt_password(bytes.fromhex(key_hex)))}")
    passwd = folder / "passwd"
    passwd.write_text("\n".join(lines) + "\n")
    passwd.chmod(0o600)
    acl = folder / "acl"
    acl.write_text(ACL)
    return passwd, acl
