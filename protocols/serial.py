# The window PC <-> keypad serial link (DESIGN §5): message validation and
# the line framing. No I/O; runs unchanged on MicroPython and CPython.
#
# A frame is one line:  b"$" + body + b"*" + CRC + b"\n"
#   body  the canonical JSON of the message (protocols.canonical.dumps), which
#         never holds a raw newline;
#   CRC   CRC-16/CCITT-FALSE of the body bytes, 4 uppercase hex digits.
# A "\r" before the "\n" is accepted on input. A frame is at most MAX_FRAME
# bytes including "$" and "\n".
#
# Every message has "v" (the link version) and "t" (its type). Commands
# (host -> keypad) and events (keypad -> host) carry "id", the sender's
# counter 1..65535; the peer answers each with "ack" or "nak" whose "ref" is
# that id. An ack may carry data fields (info, status). The result event has
# no stars and no tags: the window PC is the staff's machine and staff must
# never learn the rating; it travels to the collector over MQTT only.
import json

from protocols.canonical import CanonicalError, dumps
from protocols.record import text_problem, valid_record_id, valid_utc_time

VERSION = 1
MAX_FRAME = 512
MAX_ID = 65535

COMMANDS = ("hello", "info", "signin", "signout", "start", "cancel", "pause", "resume", "status")
REPLIES = ("ack", "nak")
EVENTS = ("result", "timeout", "error")
TYPES = COMMANDS + REPLIES + EVENTS

# Fields beyond v/t/id/ref: (type, ((name, kind, low, high, required), ...)).
# kind "s": a string of low..high characters; "i": an integer low..high;
# "c": a string of low..high characters that goes into the record, so free of
# control characters and lone surrogates; "u": UTC time YYYY-MM-DDTHH:MM:SSZ;
# "r": a rating's record id.
_CASE = ("case_no", "s", 1, 64, True)
_SERVICE = ("service_no", "s", 1, 64, False)
_FIELDS = (
    ("signin", (("name", "s", 1, 32, True), ("staff_no", "s", 1, 32, True))),
    ("start", (("case_no", "c", 1, 64, True), ("service_no", "c", 1, 64, False),
               ("item_code", "c", 1, 64, False), ("timeout_s", "i", 10, 600, False),
               ("staff_id", "c", 1, 64, False), ("org_id", "c", 1, 64, False),
               ("handled_at", "u", 20, 20, False), ("attempt", "i", 1, 2, False),
               ("follows", "r", 1, 100, False))),
    ("nak", (("reason", "s", 1, 64, True),)),
    # case_no is absent when the citizen rated without a case being started
    ("result", (("record_id", "s", 1, 64, True), ("case_no", "s", 1, 64, False), _SERVICE)),
    ("timeout", (_CASE,)),
    ("error", (("code", "s", 1, 32, True), ("text", "s", 1, 128, True))),
)  # fmt: skip

# Never on the link, in any message: which key a citizen pressed.
_PRIVATE = ("stars", "tags")

# CRC-16/CCITT-FALSE, four bits at a time: _NIBBLE[i] is the CRC of nibble i.
_NIBBLE = (
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50A5, 0x60C6, 0x70E7,
    0x8108, 0x9129, 0xA14A, 0xB16B, 0xC18C, 0xD1AD, 0xE1CE, 0xF1EF,
)  # fmt: skip
_HEXDIGITS = b"0123456789ABCDEF"


class SerialError(ValueError):
    """A message that breaks the link contract; the text names the field."""


class FrameError(SerialError):
    """A frame that could not be encoded or decoded.

    ref is the "id" of the offending message when the frame was intact enough
    to read one (so the receiver can NAK it), else None.
    """

    def __init__(self, reason, ref=None):
        super().__init__(reason)
        self.ref = ref


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE (poly 0x1021, no reflection, no final xor) of data,
    continuing from crc; crc16(b"123456789") == 0x29B1."""
    table = _NIBBLE
    for byte in data:
        crc = ((crc << 4) & 0xFFFF) ^ table[(crc >> 12) ^ (byte >> 4)]
        crc = ((crc << 4) & 0xFFFF) ^ table[(crc >> 12) ^ (byte & 0x0F)]
    return crc


def next_id(previous):
    """The id after previous: 1, 2, ... 65535, 1, ... (next_id(0) == 1)."""
    return previous % MAX_ID + 1


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _got(value):
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if _is_int(value):
        return str(value)
    if isinstance(value, str):
        return "a string of length " + str(len(value))
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a " + type(value).__name__


def _check(t, name, kind, low, high, value):
    if kind == "i":
        if not _is_int(value) or not low <= value <= high:
            raise SerialError(
                t + "." + name + ": must be an integer " + str(low) + ".." + str(high)
                + ", got " + _got(value)
            )  # fmt: skip
    elif kind == "u":
        if not valid_utc_time(value):
            raise SerialError(
                t + "." + name + ": must be UTC time as YYYY-MM-DDTHH:MM:SSZ, got " + _got(value)
            )
    elif kind == "r":
        if not valid_record_id(value):
            raise SerialError(t + "." + name + ": must be a rating's record id, got " + _got(value))
    elif not isinstance(value, str) or not low <= len(value) <= high:
        raise SerialError(
            t + "." + name + ": must be a string of " + str(low) + ".." + str(high)
            + " characters, got " + _got(value)
        )  # fmt: skip
    elif kind == "c":
        problem = text_problem(value)
        if problem:
            raise SerialError(t + "." + name + ": " + problem)


def _spec(t):
    for name, fields in _FIELDS:
        if name == t:
            return fields
    return ()


def validate(msg):
    """Check msg against the link contract; return it, or raise SerialError."""
    if not isinstance(msg, dict):
        raise SerialError("message: must be an object, got " + _got(msg))
    v = msg.get("v")
    if v != VERSION or not _is_int(v):
        raise SerialError(
            "v: unsupported link version " + _got(v) + ", this end speaks " + str(VERSION)
        )
    t = msg.get("t")
    if not isinstance(t, str) or t not in TYPES:
        if isinstance(t, str) and 0 < len(t) <= 16:
            raise SerialError("t: unknown message type '" + t + "'")
        raise SerialError("t: unknown message type, got " + _got(t))
    for key in _PRIVATE:
        if key in msg:
            raise SerialError(t + "." + key + ": the rating never goes to the window PC")
    if t in REPLIES:
        if "id" in msg:
            raise SerialError(t + ".id: a reply carries ref, not id")
        _check(t, "ref", "i", 1, MAX_ID, msg.get("ref"))
        known = ("v", "t", "ref")
    else:
        _check(t, "id", "i", 1, MAX_ID, msg.get("id"))
        known = ("v", "t", "id")
    fields = _spec(t)
    for name, kind, low, high, required in fields:
        if name in msg:
            _check(t, name, kind, low, high, msg[name])
        elif required:
            raise SerialError(t + "." + name + ": missing")
    if t == "start" and "follows" in msg and msg.get("attempt") != 2:
        raise SerialError("start.follows: only on an appended rating (attempt 2)")
    for key in msg:
        if not isinstance(key, str):
            raise SerialError(t + ": field names must be strings")
    if t != "ack":  # an ack may carry data fields; everything else is closed
        for key in sorted(msg):
            if key not in known and not any(f[0] == key for f in fields):
                raise SerialError(t + "." + key + ": unknown field")
    return msg


def message(t, id=None, **fields):
    """A command or event: message("start", 7, case_no="...") (not validated)."""
    msg = {"v": VERSION, "t": t, "id": id}
    msg.update(fields)
    return msg


def ack(ref, **data):
    msg = {"v": VERSION, "t": "ack", "ref": ref}
    msg.update(data)
    return msg


def nak(ref, reason):
    return {"v": VERSION, "t": "nak", "ref": ref, "reason": reason}


def encode_frame(msg):
    """Validate msg and return its frame; SerialError / FrameError if it cannot go."""
    validate(msg)
    try:
        body = dumps(msg)
    except CanonicalError as exc:
        raise SerialError(msg["t"] + ": " + str(exc)) from None
    crc = crc16(body)
    frame = b"$" + body + b"*" + ("%04X" % crc).encode() + b"\n"
    if len(frame) > MAX_FRAME:
        raise FrameError("frame too long: " + str(len(frame)) + " bytes > " + str(MAX_FRAME))
    return frame


def decode_line(line):
    """Decode one line (from "$" to before "\\n", an optional "\\r" stripped by
    the caller) into a validated message; raise FrameError otherwise."""
    if len(line) < 6 or line[0] != 0x24 or line[-5] != 0x2A:
        raise FrameError("bad frame: no $...*CRC structure")
    digits = line[-4:]
    for d in digits:
        if d not in _HEXDIGITS:
            raise FrameError("bad frame: checksum must be 4 uppercase hex digits")
    body = line[1:-5]
    sent = int(str(digits, "ascii"), 16)
    got = crc16(body)
    if sent != got:
        raise FrameError("bad checksum: frame has %04X, body gives %04X" % (sent, got))
    try:
        msg = json.loads(str(body, "utf-8"))
    except ValueError:  # includes UnicodeError on both interpreters
        raise FrameError("bad json") from None
    ref = None
    if isinstance(msg, dict):
        ref = msg.get("id")
        if not _is_int(ref) or not 1 <= ref <= MAX_ID:
            ref = None
    try:
        return validate(msg)
    except SerialError as exc:
        raise FrameError(str(exc), ref) from None


def _too_long():
    return FrameError("frame too long: over " + str(MAX_FRAME) + " bytes")


_HUNT = 0  # looking for "$"
_FRAME = 1  # inside a frame, collecting up to "\n"
_SKIP = 2  # dropping the rest of a too-long line
_RESYNC_TRIES = 4  # later "$" tried in a bad line (each try costs a CRC)


class FrameDecoder:
    """Turns a byte stream into messages, resynchronising after garbage.

    feed(data) returns a list, in stream order, of message dicts (valid
    frames) and FrameError instances (bad frames; str(item) is the reason,
    item.ref the id to NAK when known). Bytes outside frames are dropped and
    counted in garbage_bytes; a line longer than MAX_FRAME is dropped up to
    its "\\n" and reported once. If a bad line holds a later "$" (one of the
    first four) that starts a good frame - a frame cut short, then a whole
    one - the good frame is decoded and the cut part counted as garbage.
    The result does not depend on how the input is chunked, and the buffer
    stays within MAX_FRAME bytes.
    """

    def __init__(self):
        self._buf = bytearray()
        self._state = _HUNT
        self.garbage_bytes = 0
        self.frames = 0
        self.errors = 0

    @property
    def buffered(self):
        """Bytes held of an unfinished frame (at most MAX_FRAME)."""
        return len(self._buf)

    def feed(self, data):
        data = bytes(data)
        out = []
        i = 0
        n = len(data)
        while i < n:
            if self._state == _HUNT:
                j = data.find(b"$", i)
                if j < 0:
                    self.garbage_bytes += n - i
                    break
                self.garbage_bytes += j - i
                self._buf = bytearray(b"$")
                self._state = _FRAME
                i = j + 1
            elif self._state == _FRAME:
                j = data.find(b"\n", i)
                end = n if j < 0 else j
                if len(self._buf) + end - i > MAX_FRAME:
                    self._buf = bytearray()
                    self._state = _SKIP
                    self._error(out, _too_long())
                    continue
                self._buf.extend(data[i:end])
                if j < 0:
                    break
                i = j + 1
                self._state = _HUNT
                self._line(bytes(self._buf), out)
                self._buf = bytearray()
            else:
                j = data.find(b"\n", i)
                if j < 0:
                    break
                i = j + 1
                self._state = _HUNT
        return out

    def _error(self, out, err):
        self.errors += 1
        out.append(err)

    def _line(self, line, out):
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) + 1 > MAX_FRAME:
            self._error(out, _too_long())
            return
        try:
            out.append(decode_line(line))
            self.frames += 1
            return
        except FrameError as exc:
            first = exc
        start = line.find(b"$", 1)
        tries = 0
        while start > 0 and tries < _RESYNC_TRIES:
            tries += 1
            try:
                msg = decode_line(line[start:])
            except FrameError:
                start = line.find(b"$", start + 1)
                continue
            self.garbage_bytes += start
            self.frames += 1
            out.append(msg)
            return
        self._error(out, first)
