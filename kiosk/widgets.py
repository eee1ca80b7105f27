"""Buttons, layout helpers and the painter the scenes draw with.

The painter only draws; it also notes each text it puts on the screen in
`texts` (cleared by the app before each frame), so tests read exactly what the
last frame showed. Scenes keep their state; the painter keeps none of theirs."""

from __future__ import annotations

from dataclasses import dataclass

import pygame

from kiosk import assets as style


@dataclass
class Button:
    rect: pygame.Rect
    label: str
    action: tuple  # what the scene does when it is pressed, e.g. ("level", 5)
    kind: str = "normal"  # normal, accent, level, quiet
    selected: bool = False
    enabled: bool = True
    colour: tuple | None = None


def rows(area: pygame.Rect, count: int, height: int, gap: int = 14) -> list[pygame.Rect]:
    """`count` full-width rows of `height` from the top of `area`."""
    return [
        pygame.Rect(area.x, area.y + i * (height + gap), area.width, height) for i in range(count)
    ]


def grid(area: pygame.Rect, count: int, cols: int, height: int, gap: int = 14):
    width = (area.width - gap * (cols - 1)) // cols
    out = []
    for i in range(count):
        r, c = divmod(i, cols)
        out.append(
            pygame.Rect(area.x + c * (width + gap), area.y + r * (height + gap), width, height)
        )
    return out


def wrap(font: pygame.font.Font, text: str, width: int) -> list[str]:
    """Break text into lines no wider than `width` (by character: Chinese has no spaces)."""
    lines, line = [], ""
    for ch in text:
        if ch == "\n":
            lines.append(line)
            line = ""
            continue
        if line and font.size(line + ch)[0] > width:
            lines.append(line)
            line = ch
        else:
            line += ch
    lines.append(line)
    return lines


class Painter:
    def __init__(self, assets):
        self.assets = assets
        self.texts: list[str] = []

    def text(self, surface, text, pos, size="body", colour=style.INK, center=False, width=None):
        """Draw text at pos (its top left, or its centre); wrapped to `width`.
        Returns the height used."""
        self.texts.append(text)
        font = self.assets.font(size)
        lines = wrap(font, text, width) if width else [text]
        y = pos[1]
        line_height = font.get_linesize()
        if center:
            y -= line_height * len(lines) // 2
        for line in lines:
            image = self.assets.render(line, size, colour)
            rect = image.get_rect()
            if center:
                rect.center = (pos[0], y + line_height // 2)
            else:
                rect.topleft = (pos[0], y)
            surface.blit(image, rect)
            y += line_height
        return line_height * len(lines)

    def button(self, surface, button: Button, focused: bool = False):
        if not button.enabled:
            fill, ink = style.DISABLED, style.MUTED
        elif button.kind == "accent":
            fill, ink = style.ACCENT, style.ACCENT_INK
        elif button.kind == "level":
            fill, ink = button.colour, style.ACCENT_INK
        elif button.selected:
            fill, ink = style.BUTTON_ON, style.INK
        else:
            fill, ink = style.BUTTON, style.INK
        pygame.draw.rect(surface, fill, button.rect, border_radius=14)
        if focused or button.selected:
            pygame.draw.rect(surface, style.INK, button.rect, width=4, border_radius=14)
        size = "button"
        font = self.assets.font(size)
        if font.size(button.label)[0] > button.rect.width - 24:
            size = "body"
        self.text(surface, button.label, button.rect.center, size, ink, center=True,
                  width=button.rect.width - 24)  # fmt: skip

    def notice(self, surface, text: str, rect: pygame.Rect):
        pygame.draw.rect(surface, style.NOTICE_BG, rect, border_radius=10)
        pygame.draw.rect(surface, style.NOTICE, rect, width=3, border_radius=10)
        self.text(surface, text, rect.center, "body", style.NOTICE, center=True,
                  width=rect.width - 40)  # fmt: skip

    def qr(self, surface, matrix, rect: pygame.Rect):
        """A QR code's module matrix (True = dark), quiet zone included, drawn
        as square modules centred in rect on white."""
        count = len(matrix)
        module = max(1, min(rect.width, rect.height) // count)
        side = module * count
        left = rect.x + (rect.width - side) // 2
        top = rect.y + (rect.height - side) // 2
        pygame.draw.rect(surface, (255, 255, 255), (left, top, side, side))
        for r, row in enumerate(matrix):
            for c, dark in enumerate(row):
                if dark:
                    surface.fill((0, 0, 0), (left + c * module, top + r * module, module, module))
