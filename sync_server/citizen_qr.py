"""QR codes drawn as SVG on the server: window labels, sheets of them, case codes.

A code is drawn from the module matrix of the `qrcode` package (error
correction M, a quiet zone of 4 modules), one path of horizontal runs, so
it prints sharp at any size and needs no image library or script.
"""

from __future__ import annotations

import qrcode
from markupsafe import escape

QUIET = 4
A4_MM = (210, 297)


def matrix(text: str) -> list[list[bool]]:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=QUIET)
    code.add_data(text)
    code.make(fit=True)
    return code.get_matrix()


def path(cells: list[list[bool]], x: float, y: float, module: float) -> str:
    """SVG path data of the dark modules, one rectangle per horizontal run."""
    parts = []
    for row_number, row in enumerate(cells):
        column = 0
        while column < len(row):
            if not row[column]:
                column += 1
                continue
            start = column
            while column < len(row) and row[column]:
                column += 1
            parts.append(
                f"M{x + start * module:.3f} {y + row_number * module:.3f}"
                f"h{(column - start) * module:.3f}v{module:.3f}h{-(column - start) * module:.3f}z"
            )
    return "".join(parts)


def code_group(text: str, x: float, y: float, size: float) -> str:
    """A code of `size` (with its quiet zone) at (x, y), on white."""
    cells = matrix(text)
    module = size / len(cells)
    return (
        f'<rect x="{x:.3f}" y="{y:.3f}" width="{size:.3f}" height="{size:.3f}" fill="#fff"/>'
        f'<path d="{path(cells, x, y, module)}" fill="#000"/>'
    )


def code_svg(text: str, size: int = 300) -> str:
    """A standalone SVG of one code, `size` pixels square."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'viewBox="0 0 {size} {size}">{code_group(text, 0, 0, size)}</svg>'
    )


def label_group(title: str, subtitle: str, url: str, x: float, y: float, w: float) -> str:
    """One window's label: the title, the code, what to do, the address (mm units)."""
    size = w * 0.8
    left = x + (w - size) / 2
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{w + 24:.1f}" fill="#fff" '
        'stroke="#999" stroke-width="0.2" stroke-dasharray="1 1"/>'
        f'<text x="{x + w / 2:.1f}" y="{y + 7:.1f}" font-size="5" text-anchor="middle" '
        f'font-weight="bold">{escape(title)}</text>'
        + code_group(url, left, y + 9, size)
        + f'<text x="{x + w / 2:.1f}" y="{y + 14 + size:.1f}" font-size="3.6" '
        f'text-anchor="middle">{escape(subtitle)}</text>'
        f'<text x="{x + w / 2:.1f}" y="{y + 19 + size:.1f}" font-size="2.2" '
        f'text-anchor="middle" fill="#444">{escape(url)}</text>'
    )


def sheet_pages(labels: list[tuple[str, str, str]], columns: int = 2, rows: int = 3) -> list[str]:
    """A4 pages (SVG, millimetres) of window labels: (title, subtitle, url) each."""
    width, height = A4_MM
    margin = 12
    cell_w = (width - 2 * margin) / columns
    cell_h = (height - 2 * margin) / rows
    label_w = min(cell_w - 8, cell_h - 32)
    per_page = columns * rows
    pages = []
    for start in range(0, max(len(labels), 1), per_page):
        body = []
        for index, (title, subtitle, url) in enumerate(labels[start : start + per_page]):
            column, row = index % columns, index // columns
            x = margin + column * cell_w + (cell_w - label_w) / 2
            y = margin + row * cell_h + 2
            body.append(label_group(title, subtitle, url, x, y, label_w))
        pages.append(
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}mm" height="{height}mm" '
            f'viewBox="0 0 {width} {height}" font-family="Noto Sans CJK SC, WenQuanYi Micro Hei, '
            f'sans-serif"><rect width="{width}" height="{height}" fill="#fff"/>'
            + "".join(body)
            + "</svg>"
        )
    return pages
