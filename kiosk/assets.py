"""Fonts and colours, loaded once, here and nowhere else.

Chinese needs a CJK font from the system: pygame.font.match_font looks for
the families below in order. Without one the kiosk cannot show its texts and
says which package to install (FontMissing)."""

from __future__ import annotations

import os

import pygame

CJK_FAMILIES = (
    "wenquanyimicrohei",
    "wqymicrohei",
    "notosanscjksc",
    "notosanscjk",
    "notosanssc",
    "sourcehansanssc",
    "wenquanyizenhei",
    "microsoftyahei",
    "simhei",
    "pingfangsc",
)
KNOWN_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)
MISSING = (
    "未找到中文字体 / no Chinese (CJK) font found: "
    "install fonts-wqy-microhei (sudo apt install fonts-wqy-microhei)"
)

# sizes in pixels at normal type; large type multiplies them
SIZES = {"small": 22, "body": 30, "button": 34, "title": 46, "huge": 64}
LARGE_FACTOR = 1.45

BACKGROUND = (244, 246, 250)
PANEL = (255, 255, 255)
INK = (30, 34, 40)
MUTED = (96, 104, 116)
ACCENT = (196, 38, 46)  # the red of government service halls
ACCENT_INK = (255, 255, 255)
BUTTON = (228, 233, 241)
BUTTON_ON = (255, 226, 160)
DISABLED = (200, 204, 210)
NOTICE = (180, 20, 20)
NOTICE_BG = (255, 236, 236)
LEVEL_COLOURS = {
    5: (46, 139, 87),
    4: (92, 170, 90),
    3: (214, 164, 40),
    2: (224, 110, 50),
    1: (196, 38, 46),
}


class FontMissing(RuntimeError):
    pass


def find_cjk_font() -> str:
    """The path of a CJK font on this system; FontMissing naming the package."""
    override = os.environ.get("HCP_KIOSK_FONT")
    if override:
        if os.path.exists(override):
            return override
        raise FontMissing(MISSING + f" (HCP_KIOSK_FONT={override} does not exist)")
    if not pygame.font.get_init():
        pygame.font.init()
    for family in CJK_FAMILIES:
        path = pygame.font.match_font(family)
        if path:
            return path
    for path in KNOWN_PATHS:
        if os.path.exists(path):
            return path
    raise FontMissing(MISSING)


class Assets:
    """The fonts at every size the scenes use, for normal and large type."""

    def __init__(self, font_path: str | None = None):
        if not pygame.font.get_init():
            pygame.font.init()
        self.font_path = font_path or find_cjk_font()
        self.large = False
        self._fonts = {}
        for large in (False, True):
            for name, size in SIZES.items():
                px = round(size * LARGE_FACTOR) if large else size
                self._fonts[(name, large)] = pygame.font.Font(self.font_path, px)
        self._rendered = {}

    def font(self, name: str) -> pygame.font.Font:
        return self._fonts[(name, self.large)]

    def render(self, text: str, name: str, colour) -> pygame.Surface:
        """A text surface, cached: the same texts are drawn every frame."""
        key = (text, name, self.large, colour)
        surface = self._rendered.get(key)
        if surface is None:
            if len(self._rendered) > 2000:
                self._rendered.clear()
            surface = self.font(name).render(text, True, colour)
            self._rendered[key] = surface
        return surface
