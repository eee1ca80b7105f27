# The keypad's wall clock and its NTP sync.
#
# What a record's `clock` says (docs/protocol.md §1) follows what last set
# the time:
# - "ntp": an NTP reply set it (NTP.tick) since boot;
# - "rtc": the `set_time` command set it (the collector's clock, signed with
#   the device key but delayed by however long the command waited in the
#   broker: trusted, not exact), or the board has a battery clock
#   (`rtc_battery`) that held a plausible time at boot;
# - "unset": nothing did. The collector then corrects rated_at from boot_id
#   and uptime_ms.
# Setting the time writes machine.RTC().datetime(...) where the port has one
# (the board's clock, so time.time() follows it); the wall clock also keeps
# the difference to its base clock, so a port without an RTC (or the
# simulation, whose base is the host's clock) reports the set time as well.
# All intervals are measured with ticks_add/ticks_diff.
import struct
import time

from device.clock import _civil
from device.compat import ticks_add, ticks_diff

PLAUSIBLE = 1700000000  # 2023-11-14: a clock before this was never set
NTP_DELTA = 2208988800  # 1900-01-01 -> 1970-01-01
EPOCH_2000 = 946684800  # 1970-01-01 -> 2000-01-01 (the ESP32 port's epoch)
MAX_WAIT_MS = (1 << 29) - 1  # about 6.2 days


def days_from_civil(year, month, day):
    """Days since 1970-01-01 of a proleptic Gregorian date (the inverse of clock._civil)."""
    if month <= 2:
        year -= 1
    era = year // 400
    year_of_era = year - era * 400
    month_index = month - 3 if month > 2 else month + 9  # 0 = March
    day_of_year = (153 * month_index + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def utc_seconds(text):
    """'YYYY-MM-DDTHH:MM:SSZ' (already checked by valid_utc_time) -> seconds since 1970."""
    days = days_from_civil(int(text[0:4]), int(text[5:7]), int(text[8:10]))
    return days * 86400 + int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19])


def rtc_tuple(seconds):
    """machine.RTC().datetime() fields: (year, month, day, weekday 0=Monday,
    hours, minutes, seconds, subseconds)."""
    days = seconds // 86400
    rest = seconds - days * 86400
    year, month, day = _civil(days)
    return (year, month, day, (days + 3) % 7, rest // 3600, rest // 60 % 60, rest % 60, 0)


def _epoch_offset():
    # Bare-metal ports count time.time() from 2000, the unix port and CPython from 1970.
    try:
        return EPOCH_2000 if time.gmtime(0)[0] == 2000 else 0
    except (AttributeError, OSError, OverflowError, ValueError):
        return 0


def board_clock(rtc_battery):
    """The board's own clock as a base for WallClock: () -> (seconds since
    1970, source). "rtc" only when the board has a battery clock and it held a
    plausible time at boot; otherwise "unset"."""
    offset = _epoch_offset()

    def seconds():
        return int(time.time()) + offset

    source = "rtc" if rtc_battery and seconds() >= PLAUSIBLE else "unset"

    def read():
        return seconds(), source

    return read


class WallClock:
    """() -> (seconds since 1970 UTC, "ntp"|"rtc"|"unset"), as KeypadApp wants.

    `base` is the clock it starts from (board_clock, or a stand-in in tests
    and the simulation), reported with its own source until set() is called."""

    def __init__(self, base, rtc=None):
        self._base = base
        self.rtc = rtc  # machine.RTC() or None
        self._offset = 0
        self.source = None  # None: the base's own source
        self.rtc_errors = 0

    def __call__(self):
        seconds, source = self._base()
        return seconds + self._offset, self.source or source

    def set(self, seconds, source):
        """Set the time (seconds since 1970 UTC) and what set it ("ntp"/"rtc")."""
        seconds = int(seconds)
        if self.rtc is not None:
            try:
                self.rtc.datetime(rtc_tuple(seconds))
            except (AttributeError, OSError, TypeError, ValueError):
                self.rtc_errors += 1  # the offset below still sets the wall clock
        self._offset = 0
        self._offset = seconds - self._base()[0]
        self.source = source


def query(host, timeout_ms, port=123):
    """One SNTP request (as micropython-lib's ntptime does): seconds since 1970
    UTC. Every socket operation is bounded by timeout_ms; the name lookup is
    not (use an IP address for a DNS server that may hang)."""
    import socket

    addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(timeout_ms / 1000)
        packet = bytearray(48)
        packet[0] = 0x1B  # LI 0, version 3, mode 3 (client)
        sock.sendto(packet, addr)
        reply = sock.recv(48)
    finally:
        sock.close()
    if len(reply) < 48 or reply[0] & 0x07 != 4 or reply[1] == 0:
        raise ValueError("not an NTP server reply")  # wrong mode or kiss-o'-death
    seconds = struct.unpack("!I", reply[40:44])[0]
    if seconds < 0x80000000:
        seconds += 0x100000000  # NTP era 1 (from 2036-02-07)
    return seconds - NTP_DELTA


class NTP:
    """Sets the wall clock from an NTP server on start and every every_ms;
    after a failure it tries again after retry_ms. One query per pass at most,
    so the loop waits at most one socket timeout."""

    def __init__(self, host, clock, every_ms, retry_ms, timeout_ms, query=None, link=None):
        self.host = host  # "" or None: disabled
        self.clock = clock
        # ticks_diff tells the order of two ticks only within half the
        # counter's period (2^30 ms on a board): longer waits are cut to that
        self.every_ms = max(1, min(every_ms, MAX_WAIT_MS))
        self.retry_ms = max(1, min(retry_ms, MAX_WAIT_MS))
        self.timeout_ms = timeout_ms
        self.query = query  # fn(host, timeout_ms) -> seconds since 1970; None: skipped
        self.link = link  # fn() -> True when the network is up
        self.syncs = 0
        self.failures = 0
        self.last_error = None
        self._next = None  # ticks of the next query; None: at once

    @property
    def enabled(self):
        return bool(self.host) and self.query is not None

    def tick(self, now_ms):
        if not self.enabled:
            return None
        if self._next is not None and ticks_diff(now_ms, self._next) < 0:
            return None
        if self.link is not None and not self.link():
            return None  # no network: not a failure, try when it is back
        try:
            seconds = self.query(self.host, self.timeout_ms)
            if not isinstance(seconds, int) or seconds < PLAUSIBLE:
                raise ValueError("implausible time from NTP")
        except Exception as exc:  # a failed sync must never stop the keypad
            self.failures += 1
            self.last_error = type(exc).__name__
            self._next = ticks_add(now_ms, self.retry_ms)
            return False
        self.clock.set(seconds, "ntp")
        self.syncs += 1
        self._next = ticks_add(now_ms, self.every_ms)
        return True
