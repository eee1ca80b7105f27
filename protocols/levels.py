# Rating levels and channels, and their mappings at the boundaries.
#
# Inside hcp a level is always `stars`: 5 = 非常满意 ... 1 = 非常不满意.
# Two external code lists run in opposite directions, so each boundary maps
# explicitly through one table here:
# - GB/T 39046 满意度代码: 1 = 非常满意 ... 5 = 非常不满意;
# - the provincial interfaces' `satisfaction`: 5 = 非常满意 ... 1 = 非常不满意.
# Channels keep our own names inside; the provincial `pf` code is mapped in
# one table that an operator may replace (there is no national code for a
# keypad or a paper card).


class MappingError(ValueError):
    pass


STARS = (5, 4, 3, 2, 1)

# stars -> Chinese level name
LEVEL_NAMES = ((5, "非常满意"), (4, "满意"), (3, "基本满意"), (2, "不满意"), (1, "非常不满意"))

# stars -> GB/T 39046 满意度代码
GBT39046_CODES = ((5, 1), (4, 2), (3, 3), (2, 4), (1, 5))

# stars -> provincial `satisfaction`
PROVINCE_SATISFACTION = ((5, 5), (4, 4), (3, 3), (2, 2), (1, 1))

CHANNELS = ("keypad", "kiosk", "qr_window", "qr_case", "web", "sms", "paper")

# provincial pf codes: 1 PC, 2 mobile, 3 QR code, 4 hall tablet,
# 5 other hall terminal/kiosk, 6 phone, 7 SMS
PF_NAMES = (
    (1, "PC端"),
    (2, "移动端"),
    (3, "二维码"),
    (4, "政务大厅平板电脑"),
    (5, "政务大厅其他终端"),
    (6, "电话"),
    (7, "短信"),
)

# our channel -> pf (the default table; an operator may pass another)
CHANNEL_TO_PF = (
    ("keypad", 4),
    ("kiosk", 5),
    ("qr_window", 3),
    ("qr_case", 3),
    ("web", 1),
    ("sms", 7),
    ("paper", 5),
)

# pf -> our channel, for ratings that reach us from outside (the province);
# codes with no channel of ours are refused rather than guessed.
PF_TO_CHANNEL = (
    (1, "web"),
    (2, "web"),
    (3, "qr_case"),
    (4, "keypad"),
    (5, "kiosk"),
    (7, "sms"),
)


def _lookup(table, key, what):
    for k, v in table:
        if k == key:
            return v
    raise MappingError(what + ": no mapping for " + repr(key))


def _reverse(table, value, what):
    for k, v in table:
        if v == value:
            return k
    raise MappingError(what + ": no mapping for " + repr(value))


def is_stars(value):
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5


def is_bad(stars):
    """差评 = 不满意 (2) + 非常不满意 (1)."""
    return stars <= 2


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


def channel_to_pf(channel, table=CHANNEL_TO_PF):
    return _lookup(table, channel, "channel")


def pf_to_channel(pf, table=PF_TO_CHANNEL):
    return _lookup(table, pf, "pf")
