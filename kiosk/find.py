"""Finding what to rate: a unit's window or staff member, a service item
found by the pinyin initials of its name, or a case number typed on the
screen's keys, on a keyboard, or read by a barcode scanner."""

from __future__ import annotations

import pygame

from kiosk import assets as style
from kiosk.inputs import valid_case_no
from kiosk.scenes import Scene
from kiosk.widgets import Button, grid


class FindScene(Scene):
    """What to rate: a unit's window or staff member, a service item found by
    its pinyin initials, or a case number typed or scanned."""

    name = "find"
    PER_PAGE = 8

    def enter(self):
        self.mode = self.persist.get("mode", "unit")
        self.unit = None
        self.page = 0
        self.query = ""
        self.case_text = ""

    def _choices(self) -> list[tuple[str, tuple]]:
        content = self.app.content
        if self.mode == "unit" and self.unit is None:
            return [(name, ("unit", unit_id)) for unit_id, name in content.units]
        if self.mode == "unit":
            targets = [content.unit_target(self.unit)] + content.targets_of(self.unit)
            labels = [self.t("unit_itself")] + [t.label for t in targets[1:]]
            return [(label, ("target", t)) for label, t in zip(labels, targets, strict=True)]
        if self.mode == "item":
            return [(t.label, ("target", t)) for t in content.search_items(self.query)]
        return []

    def make_buttons(self):
        area = self.body()
        h = self.button_height()
        tabs = grid(pygame.Rect(area.x, area.y, area.width, h), 3, 3, h)
        buttons = [
            Button(tabs[0], self.t("by_unit"), ("mode", "unit"), selected=self.mode == "unit"),
            Button(tabs[1], self.t("by_item"), ("mode", "item"), selected=self.mode == "item"),
            Button(tabs[2], self.t("case_tab"), ("mode", "case"), selected=self.mode == "case"),
        ]
        list_top = area.y + h + 90
        if self.mode == "case":
            chars = "1234567890ABCDEFGHIJKLMNOPQRSTUVWXYZ-"  # every case-number character but _ .
            keys = list(chars) + [self.t("delete"), self.t("clear")]
            actions = [("char", c) for c in chars] + [("del",), ("clr",)]
            cells = grid(pygame.Rect(area.x, list_top, area.width, h), len(keys), 13, h - 14, 8)
            for rect, label, action in zip(cells, keys, actions, strict=True):
                buttons.append(Button(rect, label, action))
        elif self.mode == "item":
            letters = "abcdefghijklmnopqrstuvwxyz"
            cells = grid(pygame.Rect(area.x, list_top, area.width, h), 28, 14, h - 20, 8)
            labels = list(letters) + [self.t("delete"), self.t("clear")]
            actions = [("letter", c) for c in letters] + [("del",), ("clr",)]
            for rect, label, action in zip(cells, labels, actions, strict=True):
                buttons.append(Button(rect, label, action))
            list_top = cells[-1].bottom + 20
        choices = self._choices()
        footer = self.footer(3)
        per_page = max(1, (footer[0].top - 20 - list_top) // (h + 14)) * 2
        pages = max(1, -(-len(choices) // per_page))
        if self.page >= pages:
            self.page = 0
        shown = choices[self.page * per_page : (self.page + 1) * per_page]
        cells = grid(pygame.Rect(area.x, list_top, area.width, h), len(shown), 2, h)
        for rect, (label, action) in zip(cells, shown, strict=True):
            buttons.append(Button(rect, label, action))
        buttons.append(Button(footer[0], self.t("back"), ("back",)))
        if pages > 1:
            buttons.append(Button(footer[1], f"{self.page + 1}/{pages} ▶", ("page",)))
        if self.mode == "case":
            buttons.append(Button(footer[2], self.t("next"), ("case_ok",), "accent",
                                  enabled=bool(self.case_text)))  # fmt: skip
        return buttons

    def draw_body(self, surface):
        area = self.body()
        y = area.y + self.button_height() + 20
        paint = self.app.painter
        if self.mode == "case":
            paint.text(surface, self.t("case_prompt"), (area.x, y), "body", style.MUTED)
            paint.text(surface, self.case_text or "_", (area.x + area.width // 2, y + 10), "title")
        elif self.mode == "item":
            paint.text(surface, self.t("item_search"), (area.x, y), "body", style.MUTED)
            paint.text(surface, self.query or "_", (area.x + area.width - 260, y), "title")
            if self.query and not self._choices():
                paint.text(surface, self.t("no_items"), (area.x, y + 260), "body", style.NOTICE)
        elif self.unit is None:
            paint.text(surface, self.t("find_title"), (area.x, y), "body", style.MUTED)
            if not self.app.content.units:
                paint.text(surface, self.t("no_units"), (area.x, y + 60), "body", style.NOTICE)
        else:
            unit = self.app.content.unit_names.get(self.unit, self.unit)
            paint.text(surface, self.t("unit_targets", unit=unit), (area.x, y), "body", style.MUTED)

    def act(self, action):
        kind = action[0]
        if kind == "back":
            if self.mode == "unit" and self.unit is not None:
                self.unit = None
                self.page = 0
            else:
                self.app.home()
        elif kind == "mode":
            self.mode, self.unit, self.page = action[1], None, 0
        elif kind == "unit":
            self.unit, self.page = action[1], 0
        elif kind == "target":
            self.app.new_rating(action[1])
        elif kind == "page":
            self.page += 1  # make_buttons starts again at the first after the last
        elif kind == "letter":
            self.query = (self.query + action[1])[:32]
            self.page = 0
        elif kind == "char":
            self._case_char(action[1])
        elif kind == "del":
            if self.mode == "case":
                self.case_text = self.case_text[:-1]
            else:
                self.query = self.query[:-1]
        elif kind == "clr":
            self.case_text = self.query = ""
        elif kind == "case_ok":
            self._case_done()

    def _case_char(self, ch):
        if len(self.case_text) < 64:
            self.case_text += ch

    def _case_done(self):
        text = self.case_text.strip()
        if not valid_case_no(text):
            self.notice = self.t("case_bad")
            self.app.rejected("case_no", f"{len(text)} characters")
            return
        self.case_lookup(text)

    def on_key(self, name):
        if name == "backspace":
            self.press(("del",))

    def on_text(self, text):
        if self.mode == "case":
            for ch in text:
                self._case_char(ch)
        elif self.mode == "item":
            self.query = (self.query + text.lower())[:32]
            self.page = 0
        self.layout()

    def handle(self, inp):
        if inp == ("key", "enter") and self.mode == "case" and self.focus is None:
            self.notice = None
            self._case_done()
            if self.app.scene is self:
                self.layout()
            return
        super().handle(inp)

    def on_scan(self, text):
        self.case_lookup(text)
        if self.app.scene is self:
            self.layout()

    def on_bad_scan(self, text):
        self.bad_scan(text)
