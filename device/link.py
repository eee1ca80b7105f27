# The keypad's end of the window-PC serial link (docs/protocol.md §4).
#
# WindowLink(uart, app, device_id).poll(now_ms), once per main-loop pass:
# - reads what the UART holds (at most READ_MAX bytes a pass, never waits),
#   decodes frames with protocols.serial and answers every command with one
#   ack or nak; a frame too broken to name its id gets an "error" event
#   (at most one a poll, the rest only counted: noise must not flood the UART);
# - a repeated command (the same message again: its ack was lost) gets the
#   same answer again and is not applied twice;
# - a second "start" while a case is open and not yet rated is refused
#   ("busy"; the same case_no again is acked as already open). During the
#   follow-up window after a key press every start is accepted and queued by
#   the app, for every level (neutral confirmation);
# - sends the app's events (result/timeout/error) in order, one at a time,
#   repeating each every resend_ms until acked (at most MAX_SENDS times);
# - counts cases started and rated (主动评价率 = rated / started) for status;
# - with a roster in the config, a `signin` must name a 工号 on it (the name
#   shown is the roster's); outside the opening hours a `start` is refused
#   (device/service.py), while a case already open runs to its end.
#
# Neutral confirmation: nothing sent here depends on the level. Status shows
# "window" for both the tag and thank-you screens (whether a level has tags
# configured must not show either), and no event carries stars or tags.
# Buffers are bounded: the decoder's MAX_FRAME, OUT_MAX events waiting.
from device.compat import ticks_add, ticks_diff
from protocols import serial as proto

READ_MAX = 256  # bytes taken from the UART per poll
OUT_MAX = 16  # events waiting to go; older ones are dropped (counted)
RESEND_MS = 1000  # an unacknowledged event goes again after this long
MAX_SENDS = 5  # ... at most this many times in all
NAK_MAX = 64  # protocols.serial: nak.reason is 1..64 characters
ERROR_MAX = 128  # error.text 1..128

_STATES = {"tags": "window", "thanks": "window"}  # the rest by their own name


def _clip(text, limit):
    text = str(text) or "error"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class WindowLink:
    def __init__(self, uart, app, device_id, firmware=None, resend_ms=RESEND_MS):
        self.uart = uart
        self.app = app
        self.device_id = device_id
        self.firmware = firmware
        self.resend_ms = resend_ms
        self.decoder = proto.FrameDecoder()
        self._id = 0  # the last id we gave an event
        self._out = []  # events waiting: (type, fields)
        self._pending = None  # [id, frame, sends, next_send_ms] awaiting its ack
        self._last_cmd = None  # the last command handled and its answer frame
        self._last_answer = None
        self._error_sent = False  # an error event went out in this poll
        self.cases_started = 0
        self.cases_rated = 0  # result events of started cases
        self.cases_timed_out = 0
        self.unasked_ratings = 0  # ratings made with no case started
        self.events_sent = 0
        self.events_lost = 0  # dropped: queue full or never acked
        self.bad_frames = 0
        self.write_errors = 0

    # --- the main loop's call ---
    def poll(self, now_ms):
        self._error_sent = False
        data = self._read()
        if data:
            for item in self.decoder.feed(data):
                if isinstance(item, proto.FrameError):
                    self._bad(item)
                else:
                    self._message(item, now_ms)
        self._take_events()
        self._send_events(now_ms)

    def status(self):
        """The fields of a status ack."""
        self._take_events()  # counted before they are reported
        app = self.app
        return {
            "device_id": self.device_id,
            "state": _STATES.get(app.state, app.state),
            "cases_started": self.cases_started,
            "cases_rated": self.cases_rated,
            "cases_timed_out": self.cases_timed_out,
            "unasked_ratings": self.unasked_ratings,
            "storage_full": app.storage_full,
            "events_lost": self.events_lost + app.events_dropped,
            "bad_frames": self.bad_frames,
        }

    # --- input ---
    def _read(self):
        uart = self.uart
        try:
            n = uart.any()
            if not n:
                return None
            return uart.read(min(n, READ_MAX))
        except OSError:
            return None

    def _write(self, frame):
        try:
            self.uart.write(frame)
            return True
        except OSError:
            self.write_errors += 1
            return False

    def _send(self, msg):
        """Encode and write msg; returns the frame (None when it could not go)."""
        try:
            frame = proto.encode_frame(msg)
        except proto.SerialError:
            self.write_errors += 1
            return None
        self._write(frame)
        return frame

    def _bad(self, err):
        self.bad_frames += 1
        if err.ref is not None:
            self._send(proto.nak(err.ref, _clip(err, NAK_MAX)))
        elif not self._error_sent:  # one a pass: a noisy line must not flood the UART
            self._error_sent = True
            self._id = proto.next_id(self._id)
            text = _clip(err, ERROR_MAX)
            self._send(proto.message("error", self._id, code="frame", text=text))

    def _message(self, msg, now_ms):
        t = msg["t"]
        if t in proto.REPLIES:
            pending = self._pending
            if pending is not None and msg["ref"] == pending[0]:
                if t == "nak":
                    self.events_lost += 1
                self._pending = None
            return  # a reply to nothing we wait for: nothing to do
        if t not in proto.COMMANDS:
            self._send(proto.nak(msg["id"], "not a command: " + t))
            return
        if msg == self._last_cmd and self._last_answer is not None:
            self._write(self._last_answer)  # the same command again: its answer was lost
            return
        answer = self._command(t, msg, now_ms)
        self._last_cmd = msg
        self._last_answer = self._send(answer)

    # --- commands ---
    def _command(self, t, msg, now_ms):
        ref = msg["id"]
        app = self.app
        if t == "hello":
            return proto.ack(ref, device_id=self.device_id)
        if t == "info":
            data = {"device_id": self.device_id}
            if self.firmware:
                data["fw"] = self.firmware
            for name in ("window_id", "staff_name", "staff_no"):
                if app.assignment.get(name):
                    data[name] = app.assignment[name]
            return proto.ack(ref, **data)
        if t == "status":
            return proto.ack(ref, **self.status())
        if t == "signin":
            name = msg["name"]
            service = app.service
            if service is not None and service.roster is not None:  # who may sign in here
                name = service.name(msg["staff_no"])
                if name is None:
                    return proto.nak(ref, "unknown staff_no " + msg["staff_no"])  # 1..32
            app.assignment["staff_name"] = name
            app.assignment["staff_no"] = msg["staff_no"]
            return proto.ack(ref)
        if t == "signout":
            app.assignment.pop("staff_name", None)
            app.assignment.pop("staff_no", None)
            return proto.ack(ref)
        if t == "start":
            return self._start(msg, now_ms)
        if t == "cancel":
            app.cancel_case(now_ms)
        elif t == "pause":
            app.pause(now_ms)
        elif t == "resume":
            app.resume(now_ms)
        return proto.ack(ref)

    def _start(self, msg, now_ms):
        ref = msg["id"]
        app = self.app
        app.tick(now_ms)  # a case that just timed out is closed first
        case = {}
        for name in msg:
            if name not in ("v", "t", "id"):
                case[name] = msg[name]
        if app.state == "ask" and app.case is not None:
            if app.case.get("case_no") == case["case_no"]:
                return proto.ack(ref)  # already open
            return proto.nak(ref, "busy: case " + _clip(app.case.get("case_no"), 40) + " is open")
        if app.closed():  # by the clock alone, whatever a rating in its window holds
            return proto.nak(ref, "closed: outside service hours")
        if not app.start_case(case, now_ms):
            return proto.nak(ref, "paused")
        self.cases_started += 1
        return proto.ack(ref)

    # --- events ---
    def _take_events(self):
        events = self.app.events
        while events:
            kind, fields = events.pop(0)
            if kind == "result":
                if fields.get("case_no"):
                    self.cases_rated += 1
                else:
                    self.unasked_ratings += 1
            elif kind == "timeout":
                self.cases_timed_out += 1
            self._out.append((kind, fields))
            if len(self._out) > OUT_MAX:
                del self._out[0]
                self.events_lost += 1

    def _send_events(self, now_ms):
        pending = self._pending
        if pending is not None:
            if ticks_diff(now_ms, pending[3]) < 0:
                return
            if pending[2] >= MAX_SENDS:
                self.events_lost += 1
                self._pending = None
            else:
                self._write(pending[1])
                pending[2] += 1
                pending[3] = ticks_add(now_ms, self.resend_ms)
                return
        while self._out:
            kind, fields = self._out.pop(0)
            self._id = proto.next_id(self._id)
            frame = self._send(proto.message(kind, self._id, **fields))
            if frame is None:
                self.events_lost += 1
                continue
            self.events_sent += 1
            self._pending = [self._id, frame, 1, ticks_add(now_ms, self.resend_ms)]
            return


# Wiring (device/main.py). Best, in Device.step right after self.app.tick(now_ms),
# so a result goes out in the same pass whatever sync does afterwards:
#     if self.window_link is not None:
#         self.window_link.poll(now_ms)
# with build() creating it when there is an app:
#     device.window_link = WindowLink(machine.UART(1, 115200, timeout=0), app, device_id)
# Or, without touching Device: attach(device, uart) at the end of build().
def attach(device, uart, firmware=None):
    """Add a WindowLink to a built Device: polled after every pass's step.
    Returns the link (None in safe mode, when the device has no app)."""
    if device.app is None:
        return None
    link = WindowLink(uart, device.app, device.app.device_id, firmware)
    step = device.step

    def step_and_link(now_ms):
        try:
            step(now_ms)
        finally:
            if device.app is not None:
                link.poll(now_ms)

    device.step = step_and_link
    device.window_link = link
    return link
