# MQTT message payloads (DESIGN §4), each with an explicit version `v`.
#
# encode() gives canonical JSON bytes; decode() parses a payload, checks its
# type and version and the shape of its fields, and raises MessageError
# naming the field and the problem. Records inside a batch are validated one
# by one by the receiver (protocols.record.validate) so that one bad record
# does not sink the others.
import json

from protocols import sign
from protocols.canonical import dumps
from protocols.record import valid_device_id

VERSION = 1
SUPPORTED = (1,)
MAX_BATCH = 200  # records per up/ev message

EV = "ev"
ACK = "ack"
STATUS = "status"
CONFIG = "config"
CMD = "cmd"
CMDRES = "cmdres"
TYPES = (EV, ACK, STATUS, CONFIG, CMD, CMDRES)

COMMANDS = ("reboot", "sync_now", "status", "set_time", "factory_reset")


class MessageError(ValueError):
    pass


def _int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _bool(value):
    return value is True or value is False


def _need_int(msg, field, low=0, high=None, optional=False):
    value = msg.get(field)
    if value is None and optional:
        return
    if not _int(value) or value < low or (high is not None and value > high):
        bounds = str(low) + ".." + (str(high) if high is not None else "")
        raise MessageError(msg["t"] + "." + field + ": must be an integer " + bounds)


def _need_str(msg, field, optional=False, limit=64):
    value = msg.get(field)
    if value is None and optional:
        return
    if not isinstance(value, str) or not value or len(value) > limit:
        raise MessageError(msg["t"] + "." + field + ": must be a string of 1.." + str(limit))


def _seq_list(msg, field):
    seqs = msg.get(field)
    if not isinstance(seqs, list):
        raise MessageError(msg["t"] + "." + field + ": must be a list of seq numbers")
    for s in seqs:
        if not _int(s) or s < 1:
            raise MessageError(msg["t"] + "." + field + ": must be a list of seq numbers")


def batch(device_id, number, records):
    return {"v": VERSION, "t": EV, "device_id": device_id, "batch": number, "records": records}


def ack(number, stored, quarantined=()):
    """stored: seqs now durably stored (new or already there); quarantined:
    seqs kept aside at the collector with a reason. Either way the device may
    forget them: the collector holds them now."""
    return {
        "v": VERSION,
        "t": ACK,
        "batch": number,
        "stored": sorted(stored),
        "quarantined": sorted(quarantined),
    }


def status(online, **fields):
    msg = {"v": VERSION, "t": STATUS, "online": online}
    msg.update(fields)
    return msg


def config(version, **fields):
    msg = {"v": VERSION, "t": CONFIG, "version": version}
    msg.update(fields)
    return msg


def command(command_id, name, args=None):
    return {"v": VERSION, "t": CMD, "id": command_id, "cmd": name, "args": args or {}}


def command_result(command_id, ok, result=None):
    return {"v": VERSION, "t": CMDRES, "id": command_id, "ok": ok, "result": result}


def encode(msg):
    check(msg)
    return dumps(msg)


def encode_signed(msg, key):
    """encode() with `sig`: HMAC-SHA256 with the device's key over the
    message's canonical bytes without `sig` (as for records). The collector
    signs everything it sends down; the device ignores what does not verify."""
    check(msg)
    signed = dict(msg)
    signed["sig"] = sign.sign(msg, key)
    return dumps(signed)


def decode(payload, expected=None):
    """Parse payload bytes into a checked message dict."""
    if isinstance(payload, (bytes, bytearray)):
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeError:
            raise MessageError("payload: not UTF-8") from None
    try:
        msg = json.loads(payload)
    except ValueError:
        raise MessageError("payload: not JSON") from None
    check(msg, expected)
    return msg


def _check_ev(msg):
    if not valid_device_id(msg.get("device_id")):
        raise MessageError("ev.device_id: must be 1..32 characters of A-Z a-z 0-9 - _")
    _need_int(msg, "batch", 0)
    records = msg.get("records")
    if not isinstance(records, list) or not records:
        raise MessageError("ev.records: must be a non-empty list")
    if len(records) > MAX_BATCH:
        raise MessageError("ev.records: more than " + str(MAX_BATCH) + " records")


def _check_ack(msg):
    _need_int(msg, "batch", 0)
    _seq_list(msg, "stored")
    _seq_list(msg, "quarantined")


def _check_status(msg):
    if not _bool(msg.get("online")):
        raise MessageError("status.online: must be true or false")
    _need_str(msg, "fw", optional=True)
    _need_int(msg, "queue", optional=True)
    _need_int(msg, "last_seq", optional=True)
    counts = msg.get("counts")
    if counts is not None:
        if not isinstance(counts, dict):
            raise MessageError("status.counts: must map stars 1..5 to counts")
        for key in counts:
            if key not in ("1", "2", "3", "4", "5") or not _int(counts[key]) or counts[key] < 0:
                raise MessageError("status.counts: must map stars 1..5 to counts")


CONFIG_TEXTS = ("window_id", "staff_id", "staff_name", "staff_no", "org_id", "content_version")


def _check_config(msg):
    _need_int(msg, "version", 1)
    for field in CONFIG_TEXTS:
        _need_str(msg, field, optional=True)
    tags = msg.get("tags")
    if tags is None:
        return
    if not isinstance(tags, list):
        raise MessageError("config.tags: must be a list of [stars, code, text]")
    for row in tags:
        if (
            not isinstance(row, list)
            or len(row) != 3
            or not _int(row[0])
            or not 1 <= row[0] <= 5
            or not isinstance(row[1], str)
            or not 1 <= len(row[1]) <= 16
            or not isinstance(row[2], str)
            or not row[2]
        ):
            raise MessageError("config.tags: must be a list of [stars, code, text]")
    if tags and not msg.get("content_version"):
        raise MessageError("config.content_version: is required with tags")


def _check_cmd(msg):
    _need_str(msg, "id")
    if msg.get("cmd") not in COMMANDS:
        raise MessageError("cmd.cmd: unknown command " + repr(msg.get("cmd")))
    if not isinstance(msg.get("args"), dict):
        raise MessageError("cmd.args: must be an object")


def _check_cmdres(msg):
    _need_str(msg, "id")
    if not _bool(msg.get("ok")):
        raise MessageError("cmdres.ok: must be true or false")


_CHECKS = (
    (EV, _check_ev),
    (ACK, _check_ack),
    (STATUS, _check_status),
    (CONFIG, _check_config),
    (CMD, _check_cmd),
    (CMDRES, _check_cmdres),
)


def check(msg, expected=None):
    if not isinstance(msg, dict):
        raise MessageError("message: must be an object")
    kind = msg.get("t")
    if kind not in TYPES:
        raise MessageError("t: unknown message type " + repr(kind))
    if expected is not None and kind != expected:
        raise MessageError("t: expected " + expected + ", got " + kind)
    if msg.get("v") not in SUPPORTED:
        raise MessageError(kind + ".v: unsupported version " + repr(msg.get("v")))
    for name, fn in _CHECKS:
        if name == kind:
            fn(msg)
    return msg
