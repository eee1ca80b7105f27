"""The kiosk application: the scene manager, the rating in progress, and the
record it makes.

One thread (the one that owns the display) runs step(): pygame events become
logical inputs (kiosk.inputs), the current scene handles them, updates and
draws. Other threads (the sync worker, the local HTTP API) never touch a
scene: they post requests to the inbox, which step() answers.

The record is built with protocols (canonical bytes, signature, validation)
inside the store's transaction, which gives it its seq (kiosk.store).
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import threading
import time

import pygame

from device import app as keypad_app
from kiosk import find, scenes, technician
from kiosk.assets import Assets
from kiosk.content import Content, Target
from kiosk.inputs import InputMapper
from kiosk.texts import Texts
from kiosk.widgets import Painter
from protocols import sign
from protocols.record import device_record_id

log = logging.getLogger(__name__)

CHANNEL = "kiosk"
RATING_SCENES = ("level", "tags", "comment", "phone")
CORNER = 120  # the top right square that opens the technician PIN after CORNER_TAPS taps
CORNER_TAPS = 5
CORNER_WINDOW_MS = 3000
# evaluate's case fields -> record fields: the keypad's (a window PC's start), and the window
CASE_FIELDS = keypad_app.CASE_FIELDS + (("window_id", "window_id"),)
NTP_FLAG = "/run/systemd/timesync/synchronized"  # systemd-timesyncd's "the clock is set"


def clock_state() -> str:
    """`ntp` when the system says its clock was set from the network, else `rtc`
    (a PC's battery clock)."""
    return "ntp" if os.path.exists(NTP_FLAG) else "rtc"


def followup_token(key: bytes, record_id: str) -> str:
    """Lets the collector check that a follow-up link came from this kiosk's screen."""
    return sign.hmac_sha256(key, ("hcp/v1 followup " + record_id).encode())[:16].hex()


class Request:
    """A request from another thread, answered by step()."""

    def __init__(self, kind: str, payload):
        self.kind = kind
        self.payload = payload
        self.answer = None
        self.done = threading.Event()


class KioskApp:
    def __init__(self, settings: dict, store, surface, assets: Assets | None = None):
        self.settings = settings
        self.store = store
        self.surface = surface
        self.size = surface.get_size()
        self.device_id = settings["device_id"]
        self.key = bytes.fromhex(settings["key"])
        self.assets = assets or Assets()
        self.assets.large = bool(settings.get("large_type"))
        self.content = Content(store.get_setting("config"))
        self.texts = Texts(settings.get("language", "zh"), self.content.texts)
        self.painter = Painter(self.assets)
        self.mapper = InputMapper(self.size, settings.get("scan_gap_ms", 40))
        self.boot_id = secrets.token_hex(8)
        self._started = time.monotonic()
        self.inbox: queue.Queue[Request] = queue.Queue()
        self.link: dict = {}  # the sync worker's state, for the technician screen
        self.running = True
        self.visible: list[str] = []  # the texts of the last frame drawn
        self.outcomes: dict[str, str] = {}  # case_no -> record id, for the local API
        self.made = 0
        self.rejections: dict[str, int] = {}  # bad input by kind, since start
        self.switches = 0
        self.identify_until = None
        self._corner: list[int] = []
        self._now = 0
        self._last_input = 0
        self._case_wait_ms = None  # a case handed over waits longer for its citizen
        self.scenes = {
            cls.name: cls(self)
            for cls in (
                scenes.AttractScene,
                find.FindScene,
                scenes.LevelScene,
                scenes.TagsScene,
                scenes.CommentScene,
                scenes.PhoneScene,
                scenes.ThanksScene,
                technician.PinScene,
                technician.TechScene,
            )
        }
        self.scene = self.scenes["attract"]
        self.scene.startup({})

    # --- the loop ---
    def step(self, now_ms: int | None = None, events=None) -> None:
        """One frame: inputs, requests from other threads, idle reset, update, draw."""
        now = pygame.time.get_ticks() if now_ms is None else now_ms
        dt = max(0, now - self._now) if self._now else 0
        self._now = now
        for event in pygame.event.get() if events is None else events:
            for inp in self.mapper.feed(event, now):
                self.dispatch(inp, now)
        for inp in self.mapper.poll(now):
            self.dispatch(inp, now)
        self._answer_requests(now)
        idle_ms = self._case_wait_ms or self.settings["idle_s"] * 1000
        if self.scene.name not in ("attract", "thanks") and now - self._last_input > idle_ms:
            self.home()  # the rating in progress is dropped, never submitted
        self.scene.update(dt)
        if self.identify_until is not None and now >= self.identify_until:
            self.identify_until = None
        self.draw()

    def draw(self) -> None:
        self.painter.texts = []
        self.scene.draw(self.surface)
        if self.identify_until is not None:
            self.painter.notice(self.surface, self.device_id, pygame.Rect(40, 110, 500, 90))
        self.visible = self.painter.texts
        if pygame.display.get_init() and pygame.display.get_surface() is self.surface:
            pygame.display.flip()

    def dispatch(self, inp: tuple, now: int) -> None:
        self._last_input = now
        self._case_wait_ms = None
        kind, value = inp
        if kind == "quit":
            self.running = False
            return
        if inp == ("key", "f12"):
            self.switch("pin", {})
            return
        if kind == "tap" and self.scene.name == "attract" and self._corner_tap(value, now):
            self.switch("pin", {})
            return
        self.scene.handle(inp)

    def _corner_tap(self, pos, now) -> bool:
        if not (pos[0] >= self.size[0] - CORNER and pos[1] <= CORNER):
            self._corner = []
            return False
        self._corner = [t for t in self._corner if now - t <= CORNER_WINDOW_MS] + [now]
        if len(self._corner) >= CORNER_TAPS:
            self._corner = []
            return True
        return False

    # --- scenes ---
    def switch(self, name: str, persist: dict) -> None:
        scene = self.scenes[name]
        scene.startup(persist)
        self.scene = scene
        self.switches += 1

    def home(self) -> None:
        """Back to the start screen; a rating in progress is dropped. The
        next citizen starts with the hall's language and type size, whatever
        the last one chose."""
        self.texts.language = self.settings.get("language", "zh")
        self.assets.large = bool(self.settings.get("large_type"))
        self.switch("attract", {})

    def toggle_large(self) -> None:
        self.assets.large = not self.assets.large
        self.scene.layout()

    def toggle_language(self) -> None:
        self.texts.language = "en" if self.texts.language == "zh" else "zh"
        self.scene.layout()

    def configure(self, config: dict) -> None:
        """A config from the collector (already checked and signed)."""
        self.content = Content(config)
        self.texts.overrides = dict(self.content.texts)
        if self.scene.name not in RATING_SCENES:
            self.scene.layout()

    def new_rating(self, target: Target, case: dict | None = None) -> None:
        persist = {"target": target, "case": case, "stars": None, "tags": [], "comment": ""}
        self.switch("level", persist)

    def open_case_number(self, case_no: str) -> str | None:
        """A case number typed or scanned: open its rating (None), or the
        message saying why not."""
        known = self.store.case(case_no)
        if known is None:
            self.rejected("case_no", "unknown case number " + case_no)
            return self.texts("case_unknown", case_no=case_no)
        fields, record_id = known
        if record_id is not None:
            return self.texts("case_rated", case_no=case_no)
        self.new_rating(self._case_target(fields), fields)
        return None

    def rejected(self, kind: str, detail: str) -> None:
        """Bad input from the citizen's side: answered on screen by the scene,
        counted here and logged with its reason (never a phone number)."""
        self.rejections[kind] = self.rejections.get(kind, 0) + 1
        log.info("rejected %s input: %s", kind, detail)

    def _case_target(self, fields: dict) -> Target:
        return Target(self.texts("case_tab") + " " + fields["case_no"], {})

    def open_case(self, fields: dict):
        """Triggered mode: a finished case handed over by the hall's
        self-service app (HTTP) or the collector (evaluate command)."""
        if self.scene.name in RATING_SCENES:
            return False, "busy: a rating is in progress"
        if self.scene.name in ("pin", "technician"):
            return False, "busy: the technician screen is open"
        appended = fields.get("attempt") == 2  # 追加评价: a new record that follows the first
        if not appended:
            self.store.add_case(fields)
            _fields, record_id = self.store.case(fields["case_no"])
            if record_id is not None:
                return False, "rated: case " + fields["case_no"] + " already has a rating"
        self._last_input = self._now  # the citizen may still be on the way
        wait_s = fields.get("timeout_s") or self.settings["case_wait_s"]
        self._case_wait_ms = max(wait_s, self.settings["idle_s"]) * 1000
        self.new_rating(self._case_target(fields), fields)
        self.scene.notice = self.texts("case_opened", case_no=fields["case_no"])
        return True, {"opened": fields["case_no"]}

    # --- the record ---
    def _make_record(self, persist: dict, seq: int) -> dict:
        case = persist.get("case") or {}
        record = {
            "id": device_record_id(self.device_id, seq),
            "device_id": self.device_id,
            "seq": seq,
            "stars": persist["stars"],
            "channel": CHANNEL,
            "rated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "clock": clock_state(),
            "origin": "citizen",
            "attempt": case.get("attempt") or 1,
            "boot_id": self.boot_id,
            "uptime_ms": int((time.monotonic() - self._started) * 1000),
        }
        if persist["tags"]:
            record["tags"] = list(persist["tags"])
        if persist.get("shown_version"):  # a tag set was shown, chosen from or not
            record["content_version"] = persist["shown_version"]
        if persist.get("comment"):
            record["comment"] = persist["comment"]
        record.update(persist["target"].fields)
        for name, field in CASE_FIELDS:
            if case.get(name):
                record[field] = case[name]
        record["sig"] = sign.sign(record, self.key)
        return record

    def submit(self, persist: dict) -> None:
        """Keep the rating (and the contact given with consent), then thank
        the citizen, the same way for every level."""
        if persist["stars"] is None:
            raise ValueError("no level chosen: a rating is never made without one")
        try:
            record = self.store.add(
                lambda seq: self._make_record(persist, seq), persist.get("phone"), self.key
            )
        except Exception:
            log.exception("the rating could not be stored")
            persist["failed"] = True
            self.switch("thanks", persist)
            return
        self.made += 1
        persist["record_id"] = record["id"]
        if record.get("case_no"):
            self.outcomes[record["case_no"]] = record["id"]
        url = self.content.followup_url
        if url:
            token = followup_token(self.key, record["id"])
            persist["followup"] = f"{url}?id={record['id']}&t={token}"
        self.switch("thanks", persist)

    # --- other threads ---
    def call(self, kind: str, payload=None, timeout: float = 3.0):
        """From another thread: ask step() and wait for its answer."""
        request = Request(kind, payload)
        self.inbox.put(request)
        if not request.done.wait(timeout):
            return False, "no answer from the kiosk screen"
        return request.answer

    def post(self, kind: str, payload=None) -> None:
        """From another thread: tell step() without waiting."""
        self.inbox.put(Request(kind, payload))

    def _answer_requests(self, now: int) -> None:
        while True:
            try:
                request = self.inbox.get_nowait()
            except queue.Empty:
                return
            try:
                request.answer = self._answer(request, now)
            except Exception as exc:  # no request may stop the screen
                log.exception("request %s failed", request.kind)
                request.answer = (False, "failed: " + type(exc).__name__)
            request.done.set()

    def _answer(self, request: Request, now: int):
        kind, payload = request.kind, request.payload
        if kind == "evaluate":
            return self.open_case(payload)
        if kind == "register":
            self.store.add_case(payload)
            return True, {"registered": payload["case_no"]}
        if kind == "outcome":
            record_id = self.outcomes.get(payload)
            return True, {"result": "rated", "record_id": record_id} if record_id else None
        if kind == "config":
            self.configure(payload)
            return True, None
        if kind == "status":
            return True, {
                "device_id": self.device_id,
                "queue": len(self.store),
                "last_seq": self.store.last_seq,
                "last_ack": self.store.last_ack_at,
                "connected": bool(self.link.get("connected")),
                "config_version": self.content.version,
            }
        if kind == "identify":
            self.identify_until = now + 10000
            return True, None
        return False, "unsupported"

    def technician_info(self) -> list[tuple[str, str]]:
        t = self.texts
        link = self.link
        broker = f"{self.settings['broker_host']}:{self.settings['broker_port']}"
        state = t("t_connected") if link.get("connected") else t("t_disconnected")
        if link.get("last_error") and not link.get("connected"):
            state += " (" + str(link["last_error"])[:60] + ")"
        config = t(
            "t_config_value",
            version=self.content.version or "-",
            content=self.content.content_version or "-",
        )
        rejected = ", ".join(f"{k} {n}" for k, n in sorted(self.rejections.items())) or "0"
        return [
            (t("t_device"), f"{self.device_id} (kiosk, {self.settings['firmware']})"),
            (t("t_queue"), str(len(self.store))),
            (t("t_last_seq"), str(self.store.last_seq)),
            (t("t_last_ack"), self.store.last_ack_at or "-"),
            (t("t_broker"), f"{broker} {state}"),
            (t("t_config"), config),
            (t("t_api"), f"127.0.0.1:{self.settings['http_port']}"),
            (t("t_rejected"), rejected),
            (t("t_boot"), self.boot_id),
        ]
