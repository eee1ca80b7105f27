# Opening hours and the staff roster of the desired config (docs/protocol.md
# §3.4). Imported only when a config carries either, so a keypad without
# them spends no heap on this code.
#
# - Outside the opening hours the keypad shows CLOSED_SCREEN, ignores level
#   keys while idle and refuses the window PC's `start` (nak "closed: ...").
#   A case already started and a rating in its follow-up window always run
#   to their end: closing time never drops a rating in progress.
# - The hours are the hall's local time, China Standard Time (UTC+8, no
#   daylight saving). While the keypad's clock is unset the keypad cannot
#   tell, and stays open: it never refuses a citizen on a guess.
# - Rows that break the rules are skipped; a config whose hours are all bad
#   means no hours (open), the safe side for ratings.
# - The roster maps 工号 -> name: a `signin` names a 工号 on it (the screen then
#   shows the roster's name) or is refused.
LOCAL_OFFSET_S = 8 * 3600
PLAUSIBLE = 1700000000  # device.ntp.PLAUSIBLE: a clock before this was never set
MAX_ROWS = 64  # hours rows and roster entries kept (the config is at most 4 KB)
CLOSED_SCREEN = ("非服务时间", "暂停评价")


def _hhmm(text):
    return (
        isinstance(text, str)
        and len(text) == 5
        and text[2] == ":"
        and text[:2].isdigit()
        and text[3:].isdigit()
        and text <= "24:00"
        and text[3] < "6"
    )


def _day(value):
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 7


def _text(value):
    return isinstance(value, str) and 0 < len(value) <= 64


class Service:
    def __init__(self, config):
        self.hours = []
        rows = config.get("hours")
        for row in rows[:MAX_ROWS] if isinstance(rows, list) else ():
            if (
                isinstance(row, list)
                and len(row) == 4
                and _day(row[0])
                and _day(row[1])
                and row[0] <= row[1]
                and _hhmm(row[2])
                and _hhmm(row[3])
                and row[2] < row[3]
            ):
                self.hours.append(row)
        # "\n工号\tname\n..." in one string: 64 entries in under 1 KB, where a
        # dict and its 128 small strings take several; None: no roster, any
        # 工号 signs in
        self.roster = None
        rows = config.get("roster")
        if isinstance(rows, list):
            parts = [""]
            for row in rows[:MAX_ROWS]:
                if (
                    isinstance(row, list)
                    and len(row) == 2
                    and _text(row[0])
                    and _text(row[1])
                    and "\t" not in row[0] + row[1]
                    and "\n" not in row[0] + row[1]
                ):
                    parts.append(row[0] + "\t" + row[1])
            parts.append("")
            self.roster = "\n".join(parts)

    def name(self, staff_no):
        """The roster's name for a 工号, or None (not on it, or no roster)."""
        roster = self.roster
        if roster is None:
            return None
        at = roster.find("\n" + staff_no + "\t")
        if at < 0:
            return None
        start = at + len(staff_no) + 2
        return roster[start : roster.find("\n", start)]

    def closed(self, seconds, source):
        """True outside every row of the hours; False without hours or while
        the clock is unset (source "unset", or a time before 2023)."""
        if not self.hours or source == "unset" or seconds < PLAUSIBLE:
            return False
        local = int(seconds) + LOCAL_OFFSET_S
        day = (local // 86400 + 3) % 7 + 1  # 1970-01-01 was a Thursday (4)
        rest = local % 86400
        now = "%02d:%02d" % (rest // 3600, rest // 60 % 60)
        for first, last, start, end in self.hours:
            if first <= day <= last and start <= now < end:
                return False
        return True
