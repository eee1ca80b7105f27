# The evaluation record (docs/protocol.md §1): one per rating, immutable once made.
#
# validate() checks a record as it travels: every error names the field and
# the problem ("stars: must be an integer 1..5, got 7"), so a record kept
# aside in quarantine says exactly why. Everything it accepts fits both
# databases: integers are bounded, strings carry no NUL, no other control
# character (a comment may hold line breaks and tabs) and no lone surrogate.
from protocols.levels import CHANNELS, CLIENTS, DEVICE_CHANNELS, is_stars

ORIGINS = ("citizen", "staff_entry")
CLOCKS = ("ntp", "rtc", "unset")
WEB_CHANNELS = ("web", "qr_window", "qr_case")  # channels that say which client they came from
PAPER = "paper"
PAPER_FIELDS = ("entered_by", "entered_at", "card_date")

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
    "case_staff_id",
    "case_org_id",
    "handled_at",
    "window_id",
    "staff_id",
    "org_id",
    "boot_id",
    "uptime_ms",
    "follows",
    "client",
    "entered_by",
    "entered_at",
    "card_date",
    "sig",
)
FIELDS = REQUIRED + OPTIONAL
CODE_FIELDS = (
    "case_no",
    "service_no",
    "item_code",
    "case_staff_id",
    "case_org_id",
    "window_id",
    "staff_id",
    "org_id",
    "entered_by",
)

MAX_TAGS = 16
MAX_TAG = 16
MAX_TEXT = 500
MAX_CODE = 64
MAX_ID = 100
MAX_DEVICE_ID = 32
MAX_TOKEN = 64  # the part after "<channel>/" in a server-made id
MAX_SEQ = 2147483647  # 2^31 - 1: a rating a second for 68 years
MAX_UPTIME_MS = 1099511627776  # 2^40 ms: 34 years

_SAFE = "-_."  # besides ASCII letters and digits, in codes that name things


class RecordError(ValueError):
    def __init__(self, field, problem):
        super().__init__(field + ": " + problem)
        self.field = field
        self.problem = problem


def _int(value):
    return isinstance(value, int) and not isinstance(value, bool)


_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_WORDS = {}  # extra characters -> the set of allowed characters


def _ascii_word(value, extra):
    # explicit characters: str.isdigit() and isalpha() accept non-ASCII on CPython only
    allowed = _WORDS.get(extra)
    if allowed is None:
        allowed = _WORDS[extra] = set(_ALNUM + extra)
    for ch in value:
        if ch not in allowed:
            return False
    return True


def _hex(value):
    allowed = _WORDS.get("hex")
    if allowed is None:
        allowed = _WORDS["hex"] = set("0123456789abcdef")
    for ch in value:
        if ch not in allowed:
            return False
    return True


def digits(value):
    """A non-empty string of ASCII digits only."""
    if not value:
        return False
    for ch in value:
        if not "0" <= ch <= "9":
            return False
    return True


def valid_device_id(value):
    """1..32 characters of A-Z a-z 0-9 - _ (safe in topics, ids and file names)."""
    return isinstance(value, str) and 1 <= len(value) <= MAX_DEVICE_ID and _ascii_word(value, "-_")


def valid_tag(value):
    """A content tag code: 1..16 of A-Z a-z 0-9 - _ ."""
    return isinstance(value, str) and 1 <= len(value) <= MAX_TAG and _ascii_word(value, _SAFE)


def device_record_id(device_id, seq):
    return device_id + ":" + str(seq)


def valid_server_id(value):
    """`<channel>/<token>`: the namespace of records the collector makes (web,
    SMS, paper ...). No device id holds a "/", so no device can take one."""
    if not isinstance(value, str):
        return False
    slash = value.find("/")
    if slash < 0:
        return False
    channel, token = value[:slash], value[slash + 1 :]
    return (
        channel in CHANNELS
        and channel not in DEVICE_CHANNELS
        and 1 <= len(token) <= MAX_TOKEN
        and _ascii_word(token, _SAFE)
    )


def valid_record_id(value):
    """A device record's `<device_id>:<seq>` or a server-made `<channel>/<token>`."""
    if not isinstance(value, str) or len(value) > MAX_ID:
        return False
    colon = value.find(":")
    if colon < 0:
        return valid_server_id(value)
    seq = value[colon + 1 :]
    return valid_device_id(value[:colon]) and digits(seq) and seq[0] != "0" and int(seq) <= MAX_SEQ


_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _valid_day(year, month, day):
    if not 1 <= month <= 12 or day < 1:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return day <= _DAYS[month - 1] + (1 if month == 2 and leap else 0)


def valid_date(value):
    """YYYY-MM-DD, a real calendar day from 1970 to 9999."""
    if not isinstance(value, str) or len(value) != 10 or value[4] != "-" or value[7] != "-":
        return False
    parts = (value[0:4], value[5:7], value[8:10])
    for p in parts:
        if not digits(p):
            return False
    year, month, day = [int(p) for p in parts]
    return 1970 <= year <= 9999 and _valid_day(year, month, day)


def valid_utc_time(value):
    """YYYY-MM-DDTHH:MM:SSZ: a real calendar day and time (no leap seconds)."""
    if not isinstance(value, str) or len(value) != 20 or value[10] != "T" or value[19] != "Z":
        return False
    if not valid_date(value[:10]) or value[13] != ":" or value[16] != ":":
        return False
    parts = (value[11:13], value[14:16], value[17:19])
    for p in parts:
        if not digits(p):
            return False
    hour, minute, second = [int(p) for p in parts]
    return hour < 24 and minute < 60 and second < 60


def text_problem(value, multiline=False):
    """Why `value` cannot be stored as text, or None: NUL and other control
    characters (tab and line breaks allowed where multiline), lone surrogates."""
    # fast path, in C on both interpreters: printable text below the surrogates
    # (all of ASCII and of CJK) needs no look at each character
    # (the bound as a number: a lone surrogate in a string literal cannot be frozen
    # into a board image by MicroPython's mpy-tool)
    if not value or (min(value) >= " " and ord(max(value)) < 0xD800 and "\x7f" not in value):
        return None
    for ch in value:
        code = ord(ch)
        if code < 32 or code == 0x7F:
            if not (multiline and ch in "\t\n\r"):
                return "contains a control character"
        elif 0xD800 <= code <= 0xDFFF:
            return "contains a lone surrogate"
    return None


def _text(record, field, limit, required=False):
    value = record.get(field)
    if value is None:
        if required:
            raise RecordError(field, "is required")
        return
    if not isinstance(value, str):
        raise RecordError(field, "must be a string, got " + type(value).__name__)
    if not value:
        raise RecordError(field, "must not be empty")
    if len(value) > limit:
        raise RecordError(field, "longer than " + str(limit) + " characters")
    problem = text_problem(value, multiline=field == "comment")
    if problem:
        raise RecordError(field, problem)


def _forbid(record, fields, why):
    for field in fields:
        if field in record:
            raise RecordError(field, why)


def _device_rules(record, channel):
    device_id = record.get("device_id")
    if not valid_device_id(device_id):
        raise RecordError("device_id", "must be 1..32 characters of A-Z a-z 0-9 - _")
    seq = record.get("seq")
    if not _int(seq) or not 1 <= seq <= MAX_SEQ:
        raise RecordError("seq", "must be an integer 1.." + str(MAX_SEQ) + ", got " + repr(seq))
    if record["id"] != device_record_id(device_id, seq):
        raise RecordError("id", "must be <device_id>:<seq>")
    if record["origin"] != "citizen":
        raise RecordError("origin", "must be citizen on a " + channel + " record")
    uptime = record.get("uptime_ms")
    if uptime is not None and (not _int(uptime) or not 0 <= uptime <= MAX_UPTIME_MS):
        raise RecordError("uptime_ms", "must be an integer 0.." + str(MAX_UPTIME_MS))


def _server_rules(record, channel):
    _forbid(
        record, ("device_id", "seq", "boot_id", "uptime_ms"), "only on keypad and kiosk records"
    )
    if not valid_server_id(record["id"]) or not record["id"].startswith(channel + "/"):
        raise RecordError("id", "must be " + channel + "/<1..64 of A-Z a-z 0-9 - _ .>")
    if channel == PAPER:
        if record["origin"] != "staff_entry":
            raise RecordError("origin", "must be staff_entry on a paper record")
        for field in PAPER_FIELDS:
            if record.get(field) is None:
                raise RecordError(field, "is required on a paper record")
        if not valid_utc_time(record["entered_at"]):
            raise RecordError("entered_at", "must be UTC time as YYYY-MM-DDTHH:MM:SSZ")
        if not valid_date(record["card_date"]):
            raise RecordError("card_date", "must be a calendar date as YYYY-MM-DD")
    elif record["origin"] != "citizen":
        raise RecordError("origin", "must be citizen on a " + channel + " record")
    if channel == "web" and record.get("client") is None:
        raise RecordError("client", "is required on a web record")


def validate(record):
    """Raise RecordError for the first problem found; return the record if it is valid."""
    if not isinstance(record, dict):
        raise RecordError("record", "must be an object, got " + type(record).__name__)
    for key in sorted(record):
        if key not in FIELDS:
            raise RecordError(str(key)[:40], "unknown field")
    for key in REQUIRED:
        if record.get(key) is None:
            raise RecordError(key, "is required")

    stars = record["stars"]
    if not is_stars(stars):
        raise RecordError("stars", "must be an integer 1..5, got " + repr(stars)[:40])
    channel = record["channel"]
    if channel not in CHANNELS:
        raise RecordError("channel", "unknown channel " + repr(channel)[:40])
    if record["origin"] not in ORIGINS:
        raise RecordError("origin", "must be one of " + ", ".join(ORIGINS))
    if record["clock"] not in CLOCKS:
        raise RecordError("clock", "must be one of " + ", ".join(CLOCKS))
    attempt = record["attempt"]
    if not _int(attempt) or attempt not in (1, 2):
        raise RecordError("attempt", "must be 1 (first rating) or 2 (appended rating)")
    if not valid_utc_time(record["rated_at"]):
        raise RecordError("rated_at", "must be UTC time as YYYY-MM-DDTHH:MM:SSZ")

    _text(record, "id", MAX_ID, required=True)
    for field in CODE_FIELDS:
        _text(record, field, MAX_CODE)
    _text(record, "content_version", 32)
    _text(record, "comment", MAX_TEXT)
    _text(record, "boot_id", 32)
    for field in ("handled_at",):
        if field in record and not valid_utc_time(record[field]):
            raise RecordError(field, "must be UTC time as YYYY-MM-DDTHH:MM:SSZ")

    if channel in DEVICE_CHANNELS:
        _device_rules(record, channel)
    else:
        _server_rules(record, channel)
    if channel != PAPER:
        _forbid(record, PAPER_FIELDS, "only on paper records")

    client = record.get("client")
    if client is not None:
        if channel not in WEB_CHANNELS:
            raise RecordError("client", "only on " + ", ".join(WEB_CHANNELS) + " records")
        if client not in CLIENTS:
            raise RecordError("client", "must be one of " + ", ".join(CLIENTS))

    follows = record.get("follows")
    if attempt == 1:
        _forbid(record, ("follows",), "only on an appended rating (attempt 2)")
    elif follows is None and record.get("case_no") is None:
        raise RecordError("follows", "an appended rating needs follows or case_no")
    if follows is not None and (not valid_record_id(follows) or follows == record["id"]):
        raise RecordError("follows", "must be the id of another rating")

    tags = record.get("tags")
    if tags is not None:
        if not isinstance(tags, list):
            raise RecordError("tags", "must be a list of tag codes")
        if len(tags) > MAX_TAGS:
            raise RecordError("tags", "more than " + str(MAX_TAGS) + " tags")
        for i, tag in enumerate(tags):
            if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG:
                raise RecordError("tags", "each tag must be a code of 1..16 characters")
            if not _ascii_word(tag, _SAFE):
                raise RecordError("tags", "a tag code may hold only A-Z a-z 0-9 - _ .")
            if tag in tags[:i]:
                raise RecordError("tags", "tag " + tag + " given twice")
        if tags and not record.get("content_version"):
            raise RecordError("content_version", "is required when tags are given")

    sig = record.get("sig")
    if sig is not None:
        if not isinstance(sig, str) or len(sig) != 64 or not _hex(sig):
            raise RecordError("sig", "must be 64 lowercase hex characters")
    return record
