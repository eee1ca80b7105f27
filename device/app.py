# The window keypad's application: a small state machine over key presses.
#
#   IDLE --start_case--> ASK --key--> (差评 with reasons configured) REASON --key--> THANKS
#   IDLE/ASK --key (好评)--> THANKS --3 s--> IDLE
# Rules it keeps (DOMAIN §2, §3, §7):
# - a rating is only ever made from a key press: a case that times out gives
#   a "timeout" event and no record (never a default rating);
# - a 差评 asks for a reason; if the citizen walks away the rating is kept
#   without one (no reason is invented);
# - the thank-you screen is the same for every level, and repeat presses
#   while it shows are ignored, so staff cannot learn or change the choice.
# Logic only: no machine imports; the board wiring lives in main.py.
from device.clock import utc_iso
from protocols import sign

IDLE = "idle"
ASK = "ask"
REASON = "reason"
THANKS = "thanks"
PAUSED = "paused"

THANKS_MS = 3000
REASON_MS = 20000
DEFAULT_CASE_MS = 60000


class KeypadApp:
    def __init__(self, device_id, key, store, wall_clock, boot_id, boot_ms=0, thanks_ms=THANKS_MS):
        self.device_id = device_id
        self.key = key
        self.store = store
        self.wall_clock = wall_clock  # () -> (seconds since 1970 UTC, "ntp"|"rtc"|"unset")
        self.boot_id = boot_id
        self.boot_ms = boot_ms
        self.thanks_ms = thanks_ms
        self.assignment = {}  # window_id, staff_id, org_id, staff_name, staff_no
        self.tags = {}  # stars (str) -> tuple of (code, text) offered after that level
        self.content_version = None
        self.state = IDLE
        self.case = None
        self.events = []  # for the window PC link: ("result"|"timeout", fields)
        self._stars = None
        self._deadline = None

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

    # --- what the display shows ---
    def screen(self):
        if self.state == PAUSED:
            return ("暂停服务",)
        if self.state == THANKS:
            return ("感谢您的评价",)
        if self.state == REASON:
            lines = ["请选择不满意的原因"]
            for i, (_code, text) in enumerate(self.tags.get(str(self._stars), ())):
                lines.append(str(i + 1) + " " + text)
            return tuple(lines)
        staff = self.assignment.get("staff_name", "")
        number = self.assignment.get("staff_no", "")
        window = self.assignment.get("window_id", "")
        head = (window + " " + staff + " " + number).strip()
        if self.state == ASK:
            return (head, "请您评价")
        return (head, "欢迎评价")

    # --- inputs ---
    def start_case(self, case, now_ms):
        """case: dict with case_no, optional service_no, item_code, timeout_s."""
        if self.state in (PAUSED, REASON):
            return False
        self.case = case
        self.state = ASK
        self._deadline = now_ms + case.get("timeout_s", DEFAULT_CASE_MS // 1000) * 1000
        return True

    def cancel_case(self):
        if self.state == ASK:
            self.state = IDLE
            self.case = None

    def pause(self):
        self.state = PAUSED
        self.case = None

    def resume(self):
        if self.state == PAUSED:
            self.state = IDLE

    def press(self, index, now_ms):
        """A debounced key press: index 0 = 非常满意 (5) ... 4 = 非常不满意 (1)."""
        if self.state in (THANKS, PAUSED):
            return None  # repeat presses and presses while paused are ignored
        if self.state == REASON:
            options = self.tags.get(str(self._stars), ())
            if index >= len(options):
                return None
            return self._record(self._stars, [options[index][0]], now_ms)
        stars = 5 - index
        if stars <= 2 and self.tags.get(str(stars)):
            self._stars = stars
            self.state = REASON
            self._deadline = now_ms + REASON_MS
            return None
        return self._record(stars, [], now_ms)

    def tick(self, now_ms):
        if self._deadline is None or now_ms < self._deadline:
            return
        if self.state == ASK:
            self.events.append(("timeout", {"case_no": self.case.get("case_no")}))
            self.state = IDLE
            self.case = None
            self._deadline = None
        elif self.state == REASON:
            self._record(self._stars, [], now_ms)  # kept, no reason invented
        elif self.state == THANKS:
            self.state = IDLE
            self._deadline = None

    # --- the record ---
    def _record(self, stars, tags, now_ms):
        seq = self.store.next_seq
        seconds, clock = self.wall_clock()
        record = {
            "id": self.device_id + ":" + str(seq),
            "device_id": self.device_id,
            "seq": seq,
            "stars": stars,
            "channel": "keypad",
            "rated_at": utc_iso(seconds),
            "clock": clock,
            "origin": "citizen",
            "attempt": 1,
            "boot_id": self.boot_id,
            "uptime_ms": now_ms - self.boot_ms,
        }
        if tags:
            record["tags"] = tags
            record["content_version"] = self.content_version
        for name in ("window_id", "staff_id", "org_id"):
            if self.assignment.get(name):
                record[name] = self.assignment[name]
        case = self.case or {}
        for name in ("case_no", "service_no", "item_code"):
            if case.get(name):
                record[name] = case[name]
        record["sig"] = sign.sign(record, self.key)
        self.store.add(record)
        self.events.append(
            (
                "result",
                {
                    "record_id": record["id"],
                    "case_no": case.get("case_no"),
                    "service_no": case.get("service_no"),
                },
            )
        )
        self.state = THANKS
        self.case = None
        self._stars = None
        self._deadline = now_ms + self.thanks_ms
        return record
