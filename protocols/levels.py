# Rating levels and channels, and their mappings at the boundaries.
#
# Inside hcp a level is always `stars`: 5 = 非常满意 ... 1 = 非常不满意.
# Two external code lists run in opposite directions, so each boundary maps
# explicitly through one table here:
# - GB/T 39046 满意度代码: 1 = 非常满意 ... 5 = 非常不满意;
# - the provincial interfaces' `satisfaction`: 5 = 非常满意 ... 1 = 非常不满意.
# Channels keep our own names inside; the provincial `pf` code is mapped in
# one table. The defaults are here; the collector keeps the table in force in
# its database, where an admin may change it (there is no national code for a
# keypad or a paper card, so `paper` has none until one is configured).
#
# This module is the one place for the domain's facts about levels: which
# levels are 差评, how keys map to levels, what the levels are called.


class MappingError(ValueError):
    pass


STARS = (5, 4, 3, 2, 1)
BAD_STARS = (2, 1)  # 差评 = 不满意 + 非常不满意; the first three levels are 好评

# stars -> Chinese level name
LEVEL_NAMES = ((5, "非常满意"), (4, "满意"), (3, "基本满意"), (2, "不满意"), (1, "非常不满意"))

# stars -> GB/T 39046 满意度代码
GBT39046_CODES = ((5, 1), (4, 2), (3, 3), (2, 4), (1, 5))

# stars -> provincial `satisfaction`
PROVINCE_SATISFACTION = ((5, 5), (4, 4), (3, 3), (2, 2), (1, 1))

# A keypad's five keys, left to right: key 0 = 非常满意 (5) ... key 4 = 非常不满意 (1)
KEY_STARS = (5, 4, 3, 2, 1)

CHANNELS = ("keypad", "kiosk", "qr_window", "qr_case", "web", "sms", "hotline", "paper")
DEVICE_CHANNELS = ("keypad", "kiosk")  # records made by a provisioned device
CLIENTS = ("pc", "mobile")  # the kind of client a web or QR-code rating came from

# provincial pf codes: 1 PC, 2 mobile, 3 QR code, 4 hall tablet,
# 5 other hall terminal/kiosk, 6 phone (12345 hotline), 7 SMS
PF_NAMES = (
    (1, "PC端"),
    (2, "移动端"),
    (3, "二维码"),
    (4, "政务大厅平板电脑"),
    (5, "政务大厅其他终端"),
    (6, "电话"),
    (7, "短信"),
)
PF_CODES = tuple(code for code, _name in PF_NAMES)

# The default (channel, client, pf) table; client "" means any client.
# pf None: not reported upward until an admin configures a code (paper cards
# must never pass for ratings made on a hall terminal).
CHANNEL_TO_PF = (
    ("keypad", "", 4),
    ("kiosk", "", 5),
    ("qr_window", "", 3),
    ("qr_case", "", 3),
    ("web", "pc", 1),
    ("web", "mobile", 2),
    ("sms", "", 7),
    ("hotline", "", 6),
    ("paper", "", None),
)

# pf -> (channel, client), for ratings that reach us from outside (the
# province). Each row maps back to its own pf through CHANNEL_TO_PF (a test
# checks the round trip); codes with no row are refused rather than guessed.
PF_TO_CHANNEL = (
    (1, "web", "pc"),
    (2, "web", "mobile"),
    (3, "qr_case", ""),
    (4, "keypad", ""),
    (5, "kiosk", ""),
    (6, "hotline", ""),
    (7, "sms", ""),
)


def _code(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _lookup(table, key, what):
    if _code(key):
        for k, v in table:
            if k == key:
                return v
    raise MappingError(what + ": no mapping for " + repr(key))


def _reverse(table, value, what):
    if _code(value):
        for k, v in table:
            if v == value:
                return k
    raise MappingError(what + ": no mapping for " + repr(value))


def is_stars(value):
    return _code(value) and 1 <= value <= 5


def is_bad(stars):
    """差评 = 不满意 (2) + 非常不满意 (1)."""
    if not is_stars(stars):
        raise MappingError("stars: no level " + repr(stars))
    return stars in BAD_STARS


def key_stars(index):
    """The level of key `index` (0 = leftmost = 非常满意)."""
    return _lookup(tuple(enumerate(KEY_STARS)), index, "key")


def level_name(stars):
    return _lookup(LEVEL_NAMES, stars, "stars")


def stars_to_gbt39046(stars):
    return _lookup(GBT39046_CODES, stars, "stars")


def gbt39046_to_stars(code):
    return _reverse(GBT39046_CODES, code, "GB/T 39046 code")


def stars_to_satisfaction(stars):
    return _lookup(PROVINCE_SATISFACTION, stars, "stars")


def satisfaction_to_stars(satisfaction):
    return _reverse(PROVINCE_SATISFACTION, satisfaction, "satisfaction")


def channel_to_pf(channel, client="", table=CHANNEL_TO_PF):
    """The pf code of a rating; MappingError when the table has none for it."""
    client = client or ""
    for row_channel, row_client, pf in table:
        if row_channel == channel and row_client in ("", client):
            if pf is None:
                break
            return pf
    raise MappingError(
        "channel: no pf code configured for " + repr(channel) + (" / " + client if client else "")
    )


def pf_to_channel(pf, table=PF_TO_CHANNEL):
    """(channel, client) for a pf code received from outside."""
    if _code(pf):
        for code, channel, client in table:
            if code == pf:
                return channel, client
    raise MappingError("pf: no mapping for " + repr(pf))
