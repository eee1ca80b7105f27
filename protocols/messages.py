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
from protocols.record import (
    CLOCKS,
    MAX_SEQ,
    MAX_UPTIME_MS,
    digits,
    text_problem,
    valid_device_id,
    valid_record_id,
    valid_tag,
    valid_utc_time,
)

VERSION = 1
SUPPORTED = (1,)
MAX_BATCH = 200  # records per up/ev message
MAX_INT = 2147483647  # every counter in a message fits 32 bits

EV = "ev"
ACK = "ack"
STATUS = "status"
CONFIG = "config"
CMD = "cmd"
CMDRES = "cmdres"
SEQ = "seq"
TYPES = (EV, ACK, STATUS, CONFIG, CMD, CMDRES, SEQ)

COMMANDS = (
    "reboot",
    "sync_now",
    "status",
    "set_time",
    "identify",
    "factory_reset",
    "update",
    "evaluate",
)

# The fields each message sent up may carry (besides v and t). Messages sent
# up are strict: a field not listed is an error, so a device cannot smuggle
# data past the collector. Messages sent down may grow optional fields in a
# later minor revision; a device ignores down fields it does not know.
UP_FIELDS = (
    (EV, ("device_id", "batch", "records", "contacts")),
    (
        STATUS,
        (
            "online",
            "fw",
            "queue",
            "last_seq",
            "counts",
            "clock",
            "battery",
            "signal",
            "reset_cause",
            "boot_id",
            "uptime_ms",
            "bad_messages",
            "crashes",
            "last_error",
            "storage_full",
            "safe_mode",
            "config_version",
            "heap_free",
            "flash_free",
            "cases_started",
            "cases_rated",
        ),
    ),
    (CMDRES, ("id", "ok", "result")),
)
CONTACT_FIELDS = ("id", "contact", "consent", "sig")


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
    if not isinstance(value, str) or not value or len(value) > limit or text_problem(value):
        raise MessageError(msg["t"] + "." + field + ": must be a string of 1.." + str(limit))


def _need_bool(msg, field, optional=True):
    value = msg.get(field)
    if value is None and optional:
        return
    if not _bool(value):
        raise MessageError(msg["t"] + "." + field + ": must be true or false")


def _seq_list(msg, field):
    seqs = msg.get(field)
    if not isinstance(seqs, list):
        raise MessageError(msg["t"] + "." + field + ": must be a list of seq numbers")
    for s in seqs:
        if not _int(s) or not 1 <= s <= MAX_SEQ:
            raise MessageError(msg["t"] + "." + field + ": must be a list of seq numbers")


def batch(device_id, number, records, contacts=None):
    msg = {"v": VERSION, "t": EV, "device_id": device_id, "batch": number, "records": records}
    if contacts:
        msg["contacts"] = contacts
    return msg


def contact(record_id, phone, key):
    """A rater's phone number for the return visit, given with consent. It
    travels beside its record in the same batch, never inside it, signed with
    the device key: the record's signature stays valid when the collector
    keeps the contact apart (or erases it)."""
    entry = {"id": record_id, "contact": phone, "consent": True}
    entry["sig"] = sign.sign(entry, key)
    return entry


def valid_phone(value):
    if not isinstance(value, str) or not 5 <= len(value) <= 20:
        return False
    return digits(value[1:] if value[:1] == "+" else value)


def contact_problem(entry):
    """Why a contacts entry cannot be used (never quoting the number), or None."""
    if not isinstance(entry, dict):
        return "contact: must be an object"
    for key in entry:
        if key not in CONTACT_FIELDS:
            return "contact: unknown field " + repr(str(key)[:40])
    if not valid_record_id(entry.get("id")):
        return "contact.id: must be a record id"
    if not valid_phone(entry.get("contact")):
        return "contact.contact: must be a phone number of 5..20 digits"
    if entry.get("consent") is not True:
        return "contact.consent: must be true (the rater agreed)"
    sig = entry.get("sig")
    if not isinstance(sig, str) or len(sig) != 64:
        return "contact.sig: must be 64 lowercase hex characters"
    return None


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


def seq(boot_id, highest, counts=None):
    """The collector's answer to a device that does not know its seqs (its
    status has no `last_seq`) or that reports a lower one than the collector
    holds: the highest seq it holds for the device, for the boot that asked."""
    msg = {"v": VERSION, "t": SEQ, "boot_id": boot_id, "highest": highest}
    if counts is not None:
        msg["counts"] = counts
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
    except (ValueError, RuntimeError):  # RuntimeError: nested too deeply
        raise MessageError("payload: not JSON") from None
    check(msg, expected)
    return msg


def _check_ev(msg):
    if not valid_device_id(msg.get("device_id")):
        raise MessageError("ev.device_id: must be 1..32 characters of A-Z a-z 0-9 - _")
    _need_int(msg, "batch", 0, MAX_INT)
    records = msg.get("records")
    if not isinstance(records, list) or not records:
        raise MessageError("ev.records: must be a non-empty list")
    if len(records) > MAX_BATCH:
        raise MessageError("ev.records: more than " + str(MAX_BATCH) + " records")
    contacts = msg.get("contacts")
    if contacts is not None:
        # entries are checked one by one by the receiver, like records
        if not isinstance(contacts, list) or len(contacts) > len(records):
            raise MessageError("ev.contacts: must be a list, at most one per record")


def _check_ack(msg):
    _need_int(msg, "batch", 0, MAX_INT)
    _seq_list(msg, "stored")
    _seq_list(msg, "quarantined")


def _check_counts(msg, where):
    counts = msg.get("counts")
    if counts is None:
        return
    if isinstance(counts, dict):
        for key in counts:
            value = counts[key]
            if key not in ("1", "2", "3", "4", "5") or not _int(value) or not 0 <= value <= MAX_SEQ:
                break
        else:
            return
    raise MessageError(where + ".counts: must map stars 1..5 to counts")


def _check_seq(msg):
    _need_str(msg, "boot_id", limit=32)
    _need_int(msg, "highest", 0, MAX_SEQ)
    _check_counts(msg, "seq")


def _check_status(msg):
    _need_bool(msg, "online", optional=False)
    _need_str(msg, "fw", optional=True, limit=32)
    _need_int(msg, "queue", 0, MAX_INT, optional=True)
    _need_int(msg, "last_seq", 0, MAX_SEQ, optional=True)
    counters = ("bad_messages", "crashes", "config_version", "heap_free", "flash_free")
    for field in counters + ("cases_started", "cases_rated"):
        _need_int(msg, field, 0, MAX_INT, optional=True)
    _need_int(msg, "uptime_ms", 0, MAX_UPTIME_MS, optional=True)
    _need_int(msg, "battery", 0, 100, optional=True)
    signal = msg.get("signal")
    if signal is not None and (not _int(signal) or not -150 <= signal <= 0):
        raise MessageError("status.signal: must be an integer -150..0 (dBm)")
    if msg.get("clock") is not None and msg.get("clock") not in CLOCKS:
        raise MessageError("status.clock: must be one of " + ", ".join(CLOCKS))
    _need_str(msg, "reset_cause", optional=True, limit=32)
    _need_str(msg, "boot_id", optional=True, limit=32)
    _need_str(msg, "last_error", optional=True, limit=120)
    _need_bool(msg, "storage_full")
    _need_bool(msg, "safe_mode")
    _check_counts(msg, "status")


CONFIG_TEXTS = ("window_id", "staff_id", "staff_name", "staff_no", "org_id", "content_version")


def _check_config(msg):
    _need_int(msg, "version", 1)
    for field in CONFIG_TEXTS:
        _need_str(msg, field, optional=True)
    _check_kiosk_rows(msg)
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
            or not valid_tag(row[1])
            or not isinstance(row[2], str)
            or not row[2]
            or len(row[2]) > 64
            or text_problem(row[2])
        ):
            raise MessageError("config.tags: must be a list of [stars, code, text]")
    if tags and not msg.get("content_version"):
        raise MessageError("config.content_version: is required with tags")


# Optional config fields for a hall kiosk (docs/protocol.md §3.4). Rows are
# lists, like `tags`: units [unit_id, name]; windows [window_id, unit_id,
# name]; staff [staff_id, unit_id, name, staff_no]; items [item_code,
# unit_id, name, initials] (initials: the pinyin initials of the name, a-z,
# which the kiosk's search matches). `texts` maps a text's key to what the
# screen shows; `followup_url` is where the thank-you QR code leads.
KIOSK_ROWS = (
    ("units", ("id", "name")),
    ("windows", ("id", "unit", "name")),
    ("staff", ("id", "unit", "name", "number")),
    ("items", ("code", "unit", "name", "initials")),
)
MAX_KIOSK_ROWS = 2000
MAX_KIOSK_TEXT = 200
_TEXT_KEY = "abcdefghijklmnopqrstuvwxyz0123456789_"
_INITIALS = "abcdefghijklmnopqrstuvwxyz"


def _name_ok(value, limit=64, chars=None):
    if not isinstance(value, str) or not value or len(value) > limit or text_problem(value):
        return False
    return chars is None or all(ch in chars for ch in value)


def _check_kiosk_rows(msg):
    for field, columns in KIOSK_ROWS:
        rows = msg.get(field)
        if rows is None:
            continue
        shape = "config." + field + ": must be a list of [" + ", ".join(columns) + "]"
        if not isinstance(rows, list) or len(rows) > MAX_KIOSK_ROWS:
            raise MessageError(shape)
        seen = set()
        for row in rows:
            if not isinstance(row, list) or len(row) != len(columns):
                raise MessageError(shape)
            for i, column in enumerate(columns):
                chars = _INITIALS if column == "initials" else None
                limit = 32 if column == "initials" else 64
                if not _name_ok(row[i], limit, chars):
                    raise MessageError(shape + " (" + column + " of row " + str(len(seen)) + ")")
            if row[0] in seen:
                raise MessageError("config." + field + ": " + repr(row[0]) + " listed twice")
            seen.add(row[0])
    units = set(row[0] for row in msg.get("units") or ())
    for field, _columns in KIOSK_ROWS[1:]:
        for row in msg.get(field) or ():
            if row[1] not in units:
                raise MessageError(
                    "config." + field + ": unit " + repr(row[1]) + " is not in config.units"
                )
    texts = msg.get("texts")
    if texts is not None:
        if not isinstance(texts, dict):
            raise MessageError("config.texts: must map text keys to strings")
        for key in texts:
            if not _name_ok(key, 32, _TEXT_KEY):
                raise MessageError("config.texts: key " + repr(str(key)[:40]) + " is not a-z 0-9 _")
            if not _name_ok(texts[key], MAX_KIOSK_TEXT):
                raise MessageError(
                    "config.texts." + key + ": must be a string of 1.." + str(MAX_KIOSK_TEXT)
                )
    url = msg.get("followup_url")
    if url is not None and (
        not _name_ok(url, MAX_KIOSK_TEXT)
        or not (url.startswith("https://") or url.startswith("http://"))
        or " " in url
        or "?" in url
        or "#" in url
    ):
        raise MessageError(
            "config.followup_url: must be an http(s) URL of 1.."
            + str(MAX_KIOSK_TEXT)
            + " without spaces, query or fragment"
        )


# The case fields of an `evaluate` command (a hall self-service app hands a
# finished case to the kiosk): the same names and rules as the serial
# link's `start` (docs/protocol.md §4).
EVALUATE_TEXTS = ("case_no", "service_no", "item_code", "staff_id", "org_id", "window_id")
EVALUATE_FIELDS = EVALUATE_TEXTS + ("handled_at", "attempt", "follows", "timeout_s")


def evaluate_problem(args, where="evaluate"):
    """Why the case of an `evaluate` command cannot be used, or None."""
    if not isinstance(args, dict):
        return where + ": must be an object"
    for key in args:
        if key not in EVALUATE_FIELDS:
            return where + "." + str(key)[:40] + ": unknown field"
    if args.get("case_no") is None:
        return where + ".case_no: is required"
    for field in EVALUATE_TEXTS:
        value = args.get(field)
        if value is not None and not _name_ok(value):
            return where + "." + field + ": must be a string of 1..64 without control characters"
    handled = args.get("handled_at")
    if handled is not None and not valid_utc_time(handled):
        return where + ".handled_at: must be UTC time as YYYY-MM-DDTHH:MM:SSZ"
    attempt = args.get("attempt")
    if attempt is not None and (not _int(attempt) or attempt not in (1, 2)):
        return where + ".attempt: must be an integer 1..2"
    follows = args.get("follows")
    if follows is not None:
        if attempt != 2:
            return where + ".follows: only on an appended rating (attempt 2)"
        if not valid_record_id(follows):
            return where + ".follows: must be a rating's record id"
    timeout = args.get("timeout_s")
    if timeout is not None and (not _int(timeout) or not 10 <= timeout <= 600):
        return where + ".timeout_s: must be an integer 10..600"
    return None


def _check_cmd(msg):
    _need_str(msg, "id")
    if msg.get("cmd") not in COMMANDS:
        raise MessageError("cmd.cmd: unknown command " + repr(msg.get("cmd")))
    if not isinstance(msg.get("args"), dict):
        raise MessageError("cmd.args: must be an object")
    if msg["cmd"] == "evaluate":
        problem = evaluate_problem(msg["args"], "cmd.args")
        if problem:
            raise MessageError(problem)


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
    (SEQ, _check_seq),
)


def check(msg, expected=None):
    if not isinstance(msg, dict):
        raise MessageError("message: must be an object")
    kind = msg.get("t")
    if not isinstance(kind, str) or kind not in TYPES:
        raise MessageError("t: unknown message type " + repr(kind)[:40])
    if expected is not None and kind != expected:
        raise MessageError("t: expected " + expected + ", got " + kind)
    version = msg.get("v")
    if not _int(version) or version not in SUPPORTED:
        raise MessageError(kind + ".v: unsupported version " + repr(version)[:40])
    for name, allowed in UP_FIELDS:
        if name == kind:
            for key in msg:
                if key not in allowed and key not in ("v", "t"):
                    raise MessageError(kind + "." + str(key)[:40] + ": unknown field")
    for name, fn in _CHECKS:
        if name == kind:
            fn(msg)
    return msg
