"""The citizen's scenes, in the manner of Tuxemon's scene manager.

Each scene has startup(persist), handle(input), update(dt) and draw(surface);
draw changes nothing. `persist` is the rating in progress (a dict the app
makes in new_rating); it passes from scene to scene and is dropped, never
submitted, when the citizen goes home or walks away (idle reset).

    attract -> find (kiosk/find.py: unit -> window/staff, service item, case
    number) -> level
    -> tags -> comment -> phone -> thanks -> attract

Neutral confirmation (DOMAIN §7): every level goes through the same scenes
(tags, comment, phone) and the same thank-you; a 差评 needs a reason, a tag
or, when the config has no tags for that level, a comment.
"""

from __future__ import annotations

import pygame
import qrcode

from kiosk import assets as style
from kiosk.widgets import Button, grid
from protocols.levels import BAD_STARS, STARS

HEADER = 96
MARGIN = 40


class Scene:
    name = ""

    def __init__(self, app):
        self.app = app
        self.persist: dict = {}
        self.buttons: list[Button] = []
        self.notice: str | None = None
        self.focus: int | None = None

    # --- the scene protocol ---
    def startup(self, persist: dict) -> None:
        self.persist = persist
        self.notice = None
        self.focus = None
        self.enter()
        self.layout()

    def handle(self, inp: tuple) -> None:
        kind, value = inp
        if kind == "tap":
            for button in self.buttons:
                if button.enabled and button.rect.collidepoint(value):
                    self.press(button.action)
                    return
        elif kind == "key":
            if value in ("tab", "down", "right", "up", "left") and self.buttons:
                step = -1 if value in ("up", "left") else 1
                start = self.focus if self.focus is not None else (-1 if step > 0 else 0)
                self.focus = (start + step) % len(self.buttons)
            elif value == "enter" and self.focus is not None:
                self.press(self.buttons[self.focus].action)
            elif value == "back":
                self.press(("back",))
            else:
                self.on_key(value)
        elif kind == "text":
            self.on_text(value)
        elif kind == "scan":
            self.on_scan(value)
        elif kind == "bad_scan":
            self.on_bad_scan(value)

    def update(self, dt: int) -> None:
        pass

    def draw(self, surface) -> None:
        paint = self.app.painter
        surface.fill(style.BACKGROUND)
        header = self.header_height()
        pygame.draw.rect(surface, style.ACCENT, (0, 0, surface.get_width(), header))
        paint.text(surface, self.t("title"), (MARGIN, 14), "title", style.ACCENT_INK)
        self.draw_body(surface)
        for i, button in enumerate(self.buttons):
            paint.button(surface, button, focused=i == self.focus)
        if self.notice:
            paint.notice(surface, self.notice, self.notice_rect())

    # --- for the scenes below ---
    def enter(self) -> None:
        """Reset this scene's own state when it starts."""

    def make_buttons(self) -> list[Button]:
        return []

    def draw_body(self, surface) -> None:
        pass

    def act(self, action: tuple) -> None:
        if action[0] == "back":
            self.app.home()

    def on_key(self, name: str) -> None:
        pass

    def on_text(self, text: str) -> None:
        pass

    def on_scan(self, text: str) -> None:
        pass  # scans count on the start and find scenes only

    def on_bad_scan(self, text: str) -> None:
        pass

    def press(self, action: tuple) -> None:
        self.notice = None
        self.act(action)
        if self.app.scene is self:
            self.layout()

    def layout(self) -> None:
        self.buttons = self.make_buttons()
        if self.focus is not None and self.focus >= len(self.buttons):
            self.focus = None

    def t(self, key: str, **fields) -> str:
        return self.app.texts(key, **fields)

    @property
    def size(self) -> tuple[int, int]:
        return self.app.size

    def button_height(self) -> int:
        return self.app.assets.font("button").get_linesize() + 34

    def line(self, size: str = "title") -> int:
        """The line height of a font size, in the current type size."""
        return self.app.assets.font(size).get_linesize()

    def header_height(self) -> int:
        return max(HEADER, self.app.assets.font("title").get_linesize() + 28)

    def body(self) -> pygame.Rect:
        width, height = self.size
        header = self.header_height()
        return pygame.Rect(MARGIN, header + 24, width - 2 * MARGIN, height - header - 48)

    def footer(self, count: int) -> list[pygame.Rect]:
        """`count` buttons along the bottom edge."""
        width, height = self.size
        h = self.button_height()
        area = pygame.Rect(MARGIN, height - MARGIN - h, width - 2 * MARGIN, h)
        return grid(area, count, count, h, gap=24)

    def notice_rect(self) -> pygame.Rect:
        width, height = self.size
        h = self.app.assets.font("body").get_linesize() * 2 + 30
        return pygame.Rect(MARGIN, height - MARGIN - self.button_height() - h - 20,
                           width - 2 * MARGIN, h)  # fmt: skip

    def case_lookup(self, case_no: str) -> None:
        """A case number typed or scanned: opens its rating, or says why not."""
        self.notice = self.app.open_case_number(case_no)

    def bad_scan(self, text: str = "") -> None:
        self.notice = self.t("scan_bad")
        self.app.rejected("scan", f"{len(text)} characters")


class AttractScene(Scene):
    name = "attract"

    def make_buttons(self):
        width, height = self.size
        h = self.button_height() + 30
        big = pygame.Rect(width // 2 - 320, height // 2 - 40, 640, h)
        case = pygame.Rect(width // 2 - 320, big.bottom + 24, 640, self.button_height())
        small = self.footer(3)
        large_label = self.t("large_off") if self.app.assets.large else self.t("large_on")
        return [
            Button(big, self.t("start"), ("start",), "accent"),
            Button(case, self.t("by_case"), ("case",)),
            Button(small[0], large_label, ("large",), selected=self.app.assets.large),
            Button(small[2], self.t("language"), ("language",)),
        ]

    def draw_body(self, surface):
        width, height = self.size
        self.app.painter.text(surface, self.t("welcome"), (width // 2, height // 2 - 150), "title",
                              center=True, width=width - 2 * MARGIN)  # fmt: skip

    def act(self, action):
        kind = action[0]
        if kind == "start":
            self.app.switch("find", {"mode": "unit"})
        elif kind == "case":
            self.app.switch("find", {"mode": "case"})
        elif kind == "large":
            self.app.toggle_large()
        elif kind == "language":
            self.app.toggle_language()

    NOTICE_MS = 15000  # a message on the start screen goes after this (no idle reset here)

    def enter(self):
        self.notice_ms = 0

    def on_scan(self, text):
        self.case_lookup(text)
        self.notice_ms = 0

    def on_bad_scan(self, text):
        self.bad_scan(text)
        self.notice_ms = 0

    def update(self, dt):
        if self.notice:
            self.notice_ms += dt
            if self.notice_ms >= self.NOTICE_MS:
                self.notice = None


class LevelScene(Scene):
    name = "level"

    def make_buttons(self):
        area = self.body()
        top = area.y + self.line() + 2 * self.line("body") + 30
        h = self.button_height() + 40
        cells = grid(pygame.Rect(area.x, top, area.width, h), 5, 5, h, gap=18)
        buttons = [
            Button(
                rect,
                self.t(f"level_{stars}"),
                ("level", stars),
                "level",
                colour=style.LEVEL_COLOURS[stars],
            )  # fmt: skip
            for rect, stars in zip(cells, STARS, strict=True)
        ]
        buttons.append(Button(self.footer(3)[0], self.t("home"), ("back",)))
        return buttons

    def draw_body(self, surface):
        area = self.body()
        paint = self.app.painter
        paint.text(surface, self.t("level_title"), (area.x, area.y), "title")
        target = self.persist["target"].label
        below = (area.x, area.y + self.line() + 6)
        paint.text(surface, self.t("rating_for", target=target), below, "body", style.MUTED,
                   width=area.width)  # fmt: skip

    def act(self, action):
        if action[0] == "level":
            self.persist["stars"] = action[1]
            self.app.switch("tags", self.persist)
        else:
            self.app.home()


class TagsScene(Scene):
    """The content tags of the level, the same scene for every level. A 差评
    needs one; without tags configured for the level it says so and invents none."""

    name = "tags"

    def enter(self):
        stars = self.persist["stars"]
        self.options = self.app.content.tags_for(stars)
        self.bad = stars in BAD_STARS
        self.persist["tags"] = []
        self.persist["shown_version"] = self.app.content.content_version if self.options else None

    def make_buttons(self):
        area = self.body()
        h = self.button_height()
        chosen = self.persist["tags"]
        cells = grid(
            pygame.Rect(area.x, area.y + self.line() + 14, area.width, h), len(self.options), 3, h
        )
        buttons = [
            Button(rect, text, ("tag", code), selected=code in chosen)
            for rect, (code, text) in zip(cells, self.options, strict=False)
        ]
        footer = self.footer(3)
        buttons.append(Button(footer[0], self.t("home"), ("back",)))
        buttons.append(Button(footer[2], self.t("next"), ("next",), "accent"))
        return buttons

    def draw_body(self, surface):
        area = self.body()
        paint = self.app.painter
        head = self.t("tags_bad") if self.bad else self.t("tags_good")
        paint.text(surface, head, (area.x, area.y), "title")
        if not self.options:
            missing = self.t("tags_missing_bad") if self.bad else self.t("tags_missing_good")
            paint.text(surface, missing, (area.x, area.y + self.line() + 30), "body", style.NOTICE,
                       width=area.width)  # fmt: skip

    def act(self, action):
        kind = action[0]
        if kind == "tag":
            chosen = self.persist["tags"]
            if action[1] in chosen:
                chosen.remove(action[1])
            elif len(chosen) < 16:
                chosen.append(action[1])
        elif kind == "next":
            if self.bad and self.options and not self.persist["tags"]:
                self.notice = self.t("tags_need")
                return
            self.app.switch("comment", self.persist)
        else:
            self.app.home()


class CommentScene(Scene):
    name = "comment"
    MAX = 500

    def enter(self):
        self.persist.setdefault("comment", "")
        # a 差评 whose level had no tags to choose gives its reason here
        self.required = self.persist["stars"] in BAD_STARS and not self.persist["tags"]
        # an on-screen keyboard or input method shows its candidates near the box
        pygame.key.start_text_input()
        pygame.key.set_text_input_rect(self.comment_box())

    def comment_box(self) -> pygame.Rect:
        area = self.body()
        top = area.y + self.line() + 14 + 2 * (self.button_height() + 14) + 10
        return pygame.Rect(area.x, top, area.width, 3 * self.line("body") + 20)

    def make_buttons(self):
        area = self.body()
        h = self.button_height()
        phrases = self.t("phrases").split("|")
        cells = grid(
            pygame.Rect(area.x, area.y + self.line() + 14, area.width, h), len(phrases), 3, h
        )
        buttons = [Button(rect, p, ("phrase", p)) for rect, p in zip(cells, phrases, strict=True)]
        footer = self.footer(4)
        buttons.append(Button(footer[0], self.t("home"), ("back",)))
        buttons.append(Button(footer[1], self.t("clear"), ("clear",)))
        if not self.required:
            buttons.append(Button(footer[2], self.t("skip"), ("skip",)))
        buttons.append(Button(footer[3], self.t("next"), ("next",), "accent"))
        return buttons

    def draw_body(self, surface):
        area = self.body()
        paint = self.app.painter
        head = self.t("comment_need") if self.required else self.t("comment_title")
        paint.text(surface, head, (area.x, area.y), "title")
        box = self.comment_box()
        pygame.draw.rect(surface, style.PANEL, box, border_radius=10)
        pygame.draw.rect(surface, style.MUTED, box, width=2, border_radius=10)
        text = self.persist["comment"] or self.t("comment_hint")
        colour = style.INK if self.persist["comment"] else style.MUTED
        paint.text(surface, text, (box.x + 14, box.y + 10), "body", colour, width=box.width - 28)

    def _add(self, text):
        comment = self.persist["comment"]
        if comment and text and not comment.endswith(("，", " ", "\n")):
            comment += "，" if self.app.texts.language == "zh" else ", "
        self.persist["comment"] = (comment + text)[: self.MAX]

    def act(self, action):
        kind = action[0]
        if kind == "phrase":
            self._add(action[1])
        elif kind == "clear":
            self.persist["comment"] = ""
        elif kind == "skip":
            self.persist["comment"] = ""
            self.app.switch("phone", self.persist)
        elif kind == "next":
            self.persist["comment"] = self.persist["comment"].strip()
            if self.required and not self.persist["comment"]:
                self.notice = self.t("comment_need")
                return
            self.app.switch("phone", self.persist)
        else:
            self.app.home()

    def on_text(self, text):
        # typed text joins as it is (an input method commits whole words)
        self.persist["comment"] = (self.persist["comment"] + text)[: self.MAX]

    def on_key(self, name):
        if name == "backspace":
            self.persist["comment"] = self.persist["comment"][:-1]


def phone_ok(number: str) -> bool:
    """An 11-digit mainland mobile number, or a landline with its area code."""
    if not number.isdigit():
        return False
    if len(number) == 11 and number[0] == "1" and number[1] in "3456789":
        return True
    return number[0] == "0" and number[1] != "0" and 10 <= len(number) <= 12


class PhoneScene(Scene):
    name = "phone"

    def enter(self):
        self.number = ""
        self.consent = False

    def make_buttons(self):
        area = self.body()
        h = self.button_height()
        keypad = pygame.Rect(area.x, area.y + 2 * self.line() + 16, min(area.width, 560), h)
        labels = list("123456789") + [self.t("clear"), "0", self.t("delete")]
        actions = [("digit", c) for c in "123456789"] + [("clr",), ("digit", "0"), ("del",)]
        cells = grid(keypad, 12, 3, h - 10, 10)
        buttons = [Button(r, lab, a) for r, lab, a in zip(cells, labels, actions, strict=True)]
        consent = pygame.Rect(keypad.right + 40, keypad.y, area.right - keypad.right - 40, h * 2)
        buttons.append(Button(consent, ("√ " if self.consent else "□ ") + self.t("phone_consent"),
                              ("consent",), selected=self.consent))  # fmt: skip
        footer = self.footer(3)
        buttons.append(Button(footer[0], self.t("home"), ("back",)))
        buttons.append(Button(footer[1], self.t("skip"), ("skip",)))
        buttons.append(Button(footer[2], self.t("submit"), ("submit",), "accent"))
        return buttons

    def draw_body(self, surface):
        area = self.body()
        paint = self.app.painter
        paint.text(surface, self.t("phone_title"), (area.x, area.y), "title")
        shown = self.number or "_"
        paint.text(surface, shown, (area.x, area.y + self.line() + 4), "title")

    def act(self, action):
        kind = action[0]
        if kind == "digit":
            if len(self.number) < 12:
                self.number += action[1]
        elif kind == "del":
            self.number = self.number[:-1]
        elif kind == "clr":
            self.number = ""
        elif kind == "consent":
            self.consent = not self.consent
        elif kind == "skip":
            self.persist["phone"] = None
            self.app.submit(self.persist)
        elif kind == "submit":
            if not self.number:
                self.persist["phone"] = None
            elif not phone_ok(self.number):
                self.notice = self.t("phone_bad")
                self.app.rejected("phone", f"{len(self.number)} characters")  # never the number
                return
            elif not self.consent:
                self.notice = self.t("phone_need_consent")
                return
            else:
                self.persist["phone"] = self.number
            self.app.submit(self.persist)
        else:
            self.app.home()

    def on_text(self, text):
        for ch in text:
            if ch.isdigit() and len(self.number) < 12:
                self.number += ch
            elif ch.isdigit():
                continue
            else:  # a letter typed on a keyboard: kept, so the check below says it is no number
                self.number += ch
        self.number = self.number[:20]
        self.layout()

    def on_key(self, name):
        if name == "backspace":
            self.number = self.number[:-1]
            self.layout()


class ThanksScene(Scene):
    """The same for every level; a QR code continues on the phone."""

    name = "thanks"

    def enter(self):
        self.elapsed = 0
        self.url = self.persist.get("followup")
        self.matrix = None
        if self.url:
            code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
            code.add_data(self.url)
            code.make(fit=True)
            self.matrix = code.get_matrix()

    def make_buttons(self):
        return [Button(self.footer(3)[2], self.t("home"), ("back",), "accent")]

    def draw_body(self, surface):
        area = self.body()
        paint = self.app.painter
        if self.persist.get("failed"):
            paint.text(surface, self.t("store_failed"), (area.x, area.y + 40), "title",
                       style.NOTICE, width=area.width)  # fmt: skip
            return
        paint.text(surface, self.t("thanks"), (area.x, area.y + 40), "huge")
        if self.matrix:
            side = min(area.height - 140, 420)
            rect = pygame.Rect(area.right - side, area.y, side, side)
            paint.qr(surface, self.matrix, rect)
            paint.text(surface, self.t("thanks_qr"), (area.x, area.y + 170), "body", style.MUTED,
                       width=area.width - side - 40)  # fmt: skip
        else:
            paint.text(surface, self.t("thanks_no_qr"), (area.x, area.y + 170), "body", style.MUTED)

    def update(self, dt):
        self.elapsed += dt
        if self.elapsed >= self.app.settings["thanks_s"] * 1000:
            self.app.home()
