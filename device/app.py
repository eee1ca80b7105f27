# The window keypad's application: a small state machine over key presses.
#
#   IDLE --start--> ASK --timeout_s--> IDLE ("timeout" event, no record)
#   IDLE/ASK --level key--> follow-up window of confirm_ms, the same for every level:
#       tags configured for the level: TAGS --tag key, or tags close--> THANKS
#       no tags for the level:         THANKS (the record is written at the key press)
#   end of the window --> one "result" event, then ASK (a start queued during
#   the window), PAUSED (a pause queued during the window) or IDLE.
#
# Rules it keeps (DOMAIN §2, §3, §7):
# - a rating is only ever made from a key press: a case that times out gives
#   a "timeout" event and no record (never a default rating);
# - a 差评 asks for a reason; if the citizen walks away the rating is kept
#   without one (no reason is invented; the collector marks it as owing one);
# - neutral confirmation: the window PC is the staff's machine, and all it can
#   observe (which events, when relative to the level key press, which of its
#   commands are accepted) is the same for all five levels. The follow-up
#   window has one length for every level, the "result" event goes out exactly
#   when it ends, and a start/cancel/pause during it is queued, never refused;
# - the thank-you screen is the same for every level, and repeat presses
#   while it shows are ignored, so staff cannot learn or change the choice.
#
# Tick arithmetic wraps on a board (every 2^30 ms on most ports): every
# deadline and elapsed time goes through ticks_add/ticks_diff.
# Logic only: no machine imports; the board wiring lives in main.py.
from device.clock import utc_iso
from device.compat import ticks_add, ticks_diff
from protocols import levels, sign

IDLE = "idle"
ASK = "ask"
TAGS = "tags"
THANKS = "thanks"
PAUSED = "paused"

CONFIRM_MS = 10000  # the follow-up window after a level key press, for every level
MAX_CONFIRM_MS = 600000  # far inside the 2^29 ms that ticks_diff can tell apart
# The tag screen closes this long before the window ends (at most a quarter of
# the window), so the record of a citizen who chose no tag is written well
# before the "result" event: no flash write delays that event for any level.
TAGS_CLOSE_BEFORE_MS = 1000
DEFAULT_CASE_MS = 60000
MAX_EVENTS = 16  # events the window-PC link has not taken yet; older ones are dropped
ENOSPC = 28  # errno of a full flash
FULL_TEXT = "存储已满，暂停评价"
SEQ_TEXT = "设备正在与平台核对，暂停评价"  # a wiped store waits for down/seq

# case field (from the window PC's start) -> record field
CASE_FIELDS = (
    ("case_no", "case_no"),
    ("service_no", "service_no"),
    ("item_code", "item_code"),
    ("staff_id", "case_staff_id"),
    ("org_id", "case_org_id"),
    ("handled_at", "handled_at"),
    ("follows", "follows"),
)


class KeypadApp:
    def __init__(
        self,
        device_id,
        key,
        store,
        wall_clock,
        boot_id,
        boot_ms=0,
        confirm_ms=CONFIRM_MS,
        walk_up=True,
    ):
        if not isinstance(confirm_ms, int) or not 0 < confirm_ms <= MAX_CONFIRM_MS:
            raise ValueError("confirm_ms: must be an integer 1.." + str(MAX_CONFIRM_MS))
        self.device_id = device_id
        self.key = key
        self.store = store
        self.wall_clock = wall_clock  # () -> (seconds since 1970 UTC, "ntp"|"rtc"|"unset")
        self.boot_id = boot_id
        self.boot_ms = boot_ms
        self.confirm_ms = confirm_ms
        self.walk_up = walk_up  # level keys rate without a started case
        self.tags_ms = confirm_ms - min(TAGS_CLOSE_BEFORE_MS, confirm_ms // 4)
        self.assignment = {}  # window_id, staff_id, org_id, staff_name, staff_no
        self.tags = {}  # stars (str) -> list of (code, text) offered after that level
        self.content_version = None
        self.service = None  # device.service.Service: opening hours, roster
        self.state = IDLE
        self.case = None  # the case being asked for (ASK)
        # For the window-PC link, oldest first: ("result"|"timeout", fields).
        # The link takes them; without a link only the newest MAX_EVENTS stay.
        self.events = []
        self.events_dropped = 0
        self._uptime = 0
        self._uptime_at = boot_ms
        self._case_deadline = None
        # the follow-up window after a level key press
        self._rated_case = None  # the case the rating belongs to
        self._stars = None
        self._options = ()  # the tags shown, (code, text)
        self._shown_version = None  # content_version of the tags shown
        self._result = None  # the record's id once it is written
        self._tags_close = None
        self._window_end = None
        self._queued_case = None  # a start that came during the window
        self._queued_pause = False  # a pause that came during the window
        self._refused = None  # the OSError that refused this window's rating
        self._full_queue = None  # len(store) when a write failed for lack of space

    # --- configuration (from down/config) ---
    def configure(self, config):
        for name in ("window_id", "staff_id", "org_id", "staff_name", "staff_no"):
            if name in config:
                self.assignment[name] = config[name]
        if "tags" in config:
            self.tags = {}
            for level, code, text in config["tags"]:
                self.tags.setdefault(str(level), []).append((code, text))
            self.content_version = config.get("content_version")
        self.service = None
        if config.get("hours") or config.get("roster"):
            from device.service import Service

            self.service = Service(config)

    def closed(self):
        """Outside the opening hours (device/service.py)."""
        return self.service is not None and self.service.closed(*self.wall_clock())

    # --- what the display shows (the citizen's side) ---
    @property
    def storage_full(self):
        """True while ratings are refused for lack of space: the store's own
        `full` where it has one; else from the last failed write until an ack
        has taken a record off the store."""
        full = getattr(self.store, "full", None)
        if isinstance(full, bool):
            return full
        if self._full_queue is None:
            return False
        try:
            if len(self.store) < self._full_queue:
                self._full_queue = None
        except TypeError:
            pass  # a store that cannot tell: full until a write succeeds
        return self._full_queue is not None

    @property
    def seq_known(self):
        """False while a store that lost its state waits for the collector's
        word on the seqs it used (store.learn)."""
        return getattr(self.store, "known", True) is not False

    def screen(self):
        if self.state == PAUSED:
            return ("暂停服务",)
        if self.state == THANKS:
            if self._refused is not None:
                return (FULL_TEXT,) if _is_full(self._refused) else ("存储故障，暂停评价",)
            return ("感谢您的评价",)
        if self.state in (IDLE, ASK) and self.storage_full:
            return (FULL_TEXT,)
        if self.state in (IDLE, ASK) and not self.seq_known:
            return (SEQ_TEXT,)
        if self.state == IDLE and self.closed():
            from device.service import CLOSED_SCREEN

            return CLOSED_SCREEN
        if self.state == TAGS:
            if levels.is_bad(self._stars):
                lines = ["请选不满意原因"]  # 7 glyphs: one row of a 128-pixel panel
            else:
                lines = ["满意之处(可不选)"]  # one row too
            for i, (_code, text) in enumerate(self._options):
                lines.append(str(i + 1) + " " + text)
            return tuple(lines)
        staff = self.assignment.get("staff_name", "")
        number = self.assignment.get("staff_no", "")
        window = self.assignment.get("window_id", "")
        head = (window + " " + staff + " " + number).strip()
        if self.state == ASK:
            return (head, "请您评价")
        return (head, "欢迎评价" if self.walk_up else "欢迎光临")

    def in_window(self):
        """True during the follow-up window after a level key press."""
        return self.state in (TAGS, THANKS)

    def tags_left_ms(self, now_ms):
        """How long the tag screen still takes a choice (0 when it is not shown)."""
        if self.state != TAGS:
            return 0
        return max(0, ticks_diff(self._tags_close, now_ms))

    def uptime_ms(self, now_ms):
        """Milliseconds since boot, counted across tick wrap-arounds (the app
        sees now_ms far more often than every 2^29 ms)."""
        elapsed = ticks_diff(now_ms, self._uptime_at)
        if elapsed > 0:
            self._uptime += elapsed
            self._uptime_at = now_ms
        return self._uptime

    # --- commands from the window PC: True = accepted, False = refused ---
    def start_case(self, case, now_ms):
        """case: dict with case_no, optional service_no, item_code, timeout_s,
        staff_id, org_id, handled_at, attempt, follows (as the start carries them)."""
        self.tick(now_ms)
        if self.state == PAUSED or self._queued_pause:
            return False
        if self.in_window():
            self._queued_case = case  # asked for when the window ends
            return True
        self._ask(case, now_ms)
        return True

    def cancel_case(self, now_ms=None):
        if now_ms is not None:
            self.tick(now_ms)
        if self.in_window():
            self._queued_case = None  # a rating already made stays made
        elif self.state == ASK:
            self.state = IDLE
            self.case = None
            self._case_deadline = None
        return True

    def pause(self, now_ms=None):
        if now_ms is not None:
            self.tick(now_ms)
        if self.in_window():
            self._queued_case = None
            self._queued_pause = True  # takes effect when the window ends
        else:
            self.state = PAUSED
            self.case = None
            self._case_deadline = None
        return True

    def resume(self, now_ms=None):
        if now_ms is not None:
            self.tick(now_ms)
        self._queued_pause = False
        if self.state == PAUSED:
            self.state = IDLE
        return True

    # --- the citizen's keys ---
    def press(self, index, now_ms):
        """A debounced key press: index 0 = 非常满意 (5) ... 4 = 非常不满意 (1).
        Returns the record when this press wrote one."""
        self.tick(now_ms)
        if self.state in (THANKS, PAUSED):
            return None  # repeat presses and presses while paused are ignored
        if self.state == TAGS:
            if not 0 <= index < len(self._options):
                return None
            return self._record([self._options[index][0]], now_ms)
        try:
            stars = levels.key_stars(index)
        except levels.MappingError:
            return None  # a key that is not a level key
        if self.state == IDLE and (not self.walk_up or self.closed()):
            return None  # only a case the window PC started; none after hours
        if self.storage_full or not self.seq_known:
            return None  # refused before the level matters; the screen says why
        self._rated_case = self.case
        self.case = None
        self._case_deadline = None
        self._stars = stars
        self._result = None
        self._window_end = ticks_add(now_ms, self.confirm_ms)
        options = self.tags.get(str(stars))
        if options:
            self._options = tuple(options)
            self._shown_version = self.content_version
            self._tags_close = ticks_add(now_ms, self.tags_ms)
            self.state = TAGS
            return None
        self._options = ()
        self._shown_version = None
        return self._record([], now_ms)

    # --- time ---
    def tick(self, now_ms):
        self.uptime_ms(now_ms)
        if self.state == ASK and ticks_diff(now_ms, self._case_deadline) >= 0:
            self._emit("timeout", self._case_fields(self.case, ("case_no",)))
            self.state = IDLE
            self.case = None
            self._case_deadline = None
        if self.state == TAGS and ticks_diff(now_ms, self._tags_close) >= 0:
            self._record([], now_ms)  # kept, no reason invented
        if self.state == THANKS and ticks_diff(now_ms, self._window_end) >= 0:
            self._end_window(now_ms)

    def _end_window(self, now_ms):
        if self._refused is None:
            fields = {"record_id": self._result}
            fields.update(self._case_fields(self._rated_case, ("case_no", "service_no")))
            self._emit("result", fields)
        else:  # no record: say so, and close the case without a rating
            full = _is_full(self._refused)
            code, text = ("storage_full", FULL_TEXT) if full else ("storage", "存储故障")
            self._emit("error", {"code": code, "text": text})
            case = self._case_fields(self._rated_case, ("case_no",))
            if case:
                self._emit("timeout", case)
            self._refused = None
        queued, pause = self._queued_case, self._queued_pause
        self._rated_case = self._stars = self._result = None
        self._options = ()
        self._shown_version = self._tags_close = self._window_end = None
        self._queued_case = None
        self._queued_pause = False
        if pause:
            self.state = PAUSED
        elif queued is not None:
            self._ask(queued, now_ms)
        else:
            self.state = IDLE

    def _ask(self, case, now_ms):
        self.case = case
        self.state = ASK
        timeout_ms = case.get("timeout_s", DEFAULT_CASE_MS // 1000) * 1000
        self._case_deadline = ticks_add(now_ms, timeout_ms)

    def _emit(self, kind, fields):
        self.events.append((kind, fields))
        if len(self.events) > MAX_EVENTS:
            del self.events[0]
            self.events_dropped += 1

    @staticmethod
    def _case_fields(case, names):
        fields = {}
        for name in names:
            if case and case.get(name) is not None:
                fields[name] = case[name]
        return fields

    # --- the record ---
    def _record(self, tags, now_ms):
        """Write the rating of this window; the thank-you shows until it ends."""
        seq = self.store.next_seq
        seconds, clock = self.wall_clock()
        case = self._rated_case or {}
        record = {
            "id": self.device_id + ":" + str(seq),
            "device_id": self.device_id,
            "seq": seq,
            "stars": self._stars,
            "channel": "keypad",
            "rated_at": utc_iso(seconds),
            "clock": clock,
            "origin": "citizen",
            "attempt": case.get("attempt") or 1,
            "boot_id": self.boot_id,
            "uptime_ms": self.uptime_ms(now_ms),
        }
        if tags:
            record["tags"] = tags
        if self._shown_version:  # a tag set was shown, whether or not one was chosen
            record["content_version"] = self._shown_version
        for name in ("window_id", "staff_id", "org_id"):
            if self.assignment.get(name):
                record[name] = self.assignment[name]
        for name, field in CASE_FIELDS:
            if case.get(name):
                record[field] = case[name]
        record["sig"] = sign.sign(record, self.key)
        try:
            self.store.add(record)
        except OSError as exc:
            # Refused, the same way for every level: the window runs to its
            # usual end, which then reports that no record was made.
            self._refused = exc
            self._result = None
            self.state = THANKS
            if not _is_full(exc):
                raise  # a broken flash: the main loop counts it as a crash
            try:
                self._full_queue = len(self.store)
            except TypeError:
                self._full_queue = 0
            return None
        self._full_queue = None
        self._result = record["id"]
        self.state = THANKS
        return record


def _is_full(exc):
    """A write refused for lack of space: store.StorageFull, or ENOSPC."""
    if type(exc).__name__ == "StorageFull":
        return True
    return bool(exc.args) and exc.args[0] == ENOSPC
