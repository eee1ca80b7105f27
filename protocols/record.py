# The evaluation record (DESIGN §3): one per rating, immutable once made.
#
# validate() checks a record as it travels: every error names the field and
# the problem ("stars: must be an integer 1..5, got 7"), so a record kept
# aside in quarantine says exactly why.
from protocols.levels import CHANNELS, is_stars

ORIGINS = ("citizen", "staff_entry", "system")
CLOCKS = ("ntp", "rtc", "unset")
DEVICE_CHANNELS = ("keypad", "kiosk")  # channels whose id is <device_id>:<seq>

REQUIRED = ("id", "stars", "channel", "rated_at", "clock", "origin", "attempt")
OPTIONAL = (
    "device_id",
    "seq",
    "tags",
    "content_version",
    "comment",
    "case_no",
    "service_no",
    "item_code",
    "window_id",
    "staff_id",
    "org_id",
    "boot_id",
    "uptime_ms",
    "contact",
    "sig",
)
FIELDS = REQUIRED + OPTIONAL

MAX_TAGS = 16
MAX_TAG = 16
MAX_TEXT = 500
MAX_CODE = 64
MAX_DEVICE_ID = 32


class RecordError(ValueError):
    def __init__(self, field, problem):
        super().__init__(field + ": " + problem)
        self.field = field
        self.problem = problem


def _int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def valid_device_id(value):
    """1..32 characters of A-Z a-z 0-9 - _ (safe in topics, ids and file names)."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_DEVICE_ID:
        return False
    for ch in value:
        if not (ch.isalpha() and ord(ch) < 128 or ch.isdigit() or ch in "-_"):
            return False
    return True


def valid_utc_time(value):
    """YYYY-MM-DDTHH:MM:SSZ with plausible fields (no leap-second or day-of-month check)."""
    if not isinstance(value, str) or len(value) != 20:
        return False
    if value[4] != "-" or value[7] != "-" or value[10] != "T":
        return False
    if value[13] != ":" or value[16] != ":" or value[19] != "Z":
        return False
    parts = (value[0:4], value[5:7], value[8:10], value[11:13], value[14:16], value[17:19])
    for p in parts:
        if not p.isdigit():
            return False
    year, month, day, hour, minute, second = [int(p) for p in parts]
    return (
        1970 <= year <= 9999
        and 1 <= month <= 12
        and 1 <= day <= 31
        and hour < 24
        and minute < 60
        and second < 60
    )


def _text(record, field, limit, required=False):
    value = record.get(field)
    if value is None:
        if required:
            raise RecordError(field, "is required")
        return
    if not isinstance(value, str):
        raise RecordError(field, "must be a string, got " + type(value).__name__)
    if len(value) > limit:
        raise RecordError(field, "longer than " + str(limit) + " characters")
    if field != "comment":
        for ch in value:
            if ord(ch) < 32:
                raise RecordError(field, "contains a control character")


def validate(record):
    """Raise RecordError for the first problem found; return the record if it is valid."""
    if not isinstance(record, dict):
        raise RecordError("record", "must be an object, got " + type(record).__name__)
    for key in sorted(record):
        if key not in FIELDS:
            raise RecordError(key, "unknown field")
    for key in REQUIRED:
        if record.get(key) is None:
            raise RecordError(key, "is required")

    stars = record["stars"]
    if not is_stars(stars):
        raise RecordError("stars", "must be an integer 1..5, got " + repr(stars))
    channel = record["channel"]
    if channel not in CHANNELS:
        raise RecordError("channel", "unknown channel " + repr(channel))
    if record["origin"] not in ORIGINS:
        raise RecordError("origin", "must be one of " + ", ".join(ORIGINS))
    if record["clock"] not in CLOCKS:
        raise RecordError("clock", "must be one of " + ", ".join(CLOCKS))
    if record["attempt"] not in (1, 2) or not _int(record["attempt"]):
        raise RecordError("attempt", "must be 1 (first rating) or 2 (appended rating)")
    if not valid_utc_time(record["rated_at"]):
        raise RecordError("rated_at", "must be UTC time as YYYY-MM-DDTHH:MM:SSZ")

    _text(record, "id", 100, required=True)
    for field in ("case_no", "service_no", "item_code", "window_id", "staff_id", "org_id"):
        _text(record, field, MAX_CODE)
    _text(record, "content_version", 32)
    _text(record, "comment", MAX_TEXT)
    _text(record, "boot_id", 32)

    if channel in DEVICE_CHANNELS:
        device_id = record.get("device_id")
        if not valid_device_id(device_id):
            raise RecordError("device_id", "must be 1..32 characters of A-Z a-z 0-9 - _")
        seq = record.get("seq")
        if not _int(seq) or seq < 1:
            raise RecordError("seq", "must be an integer >= 1, got " + repr(seq))
        if record["id"] != device_id + ":" + str(seq):
            raise RecordError("id", "must be <device_id>:<seq>")

    uptime = record.get("uptime_ms")
    if uptime is not None and (not _int(uptime) or uptime < 0):
        raise RecordError("uptime_ms", "must be an integer >= 0")

    tags = record.get("tags")
    if tags is not None:
        if not isinstance(tags, list):
            raise RecordError("tags", "must be a list of tag codes")
        if len(tags) > MAX_TAGS:
            raise RecordError("tags", "more than " + str(MAX_TAGS) + " tags")
        for tag in tags:
            if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG:
                raise RecordError("tags", "each tag must be a code of 1..16 characters")
        if tags and not record.get("content_version"):
            raise RecordError("content_version", "is required when tags are given")

    contact = record.get("contact")
    if contact is not None:
        if not isinstance(contact, str) or not 5 <= len(contact) <= 20:
            raise RecordError("contact", "must be a phone number of 5..20 digits")
        for ch in contact.lstrip("+"):
            if not ch.isdigit():
                raise RecordError("contact", "must be a phone number of 5..20 digits")

    sig = record.get("sig")
    if sig is not None:
        if not isinstance(sig, str) or len(sig) != 64:
            raise RecordError("sig", "must be 64 hex characters")
        for ch in sig:
            if ch not in "0123456789abcdef":
                raise RecordError("sig", "must be 64 hex characters")
    return record
