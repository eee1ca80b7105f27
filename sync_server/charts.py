"""Charts drawn on the server as SVG (no script, no outside library).

Each chart is an <svg role="img"> with a <title> and a <desc> that screen
readers announce; the page puts the same numbers in a table beside it. Every
text that came from data is escaped. Two kinds:

- `bars`: horizontal bars, one a row, each split into a part (差评, say) and
  the rest, with the number at the end of the bar;
- `lines`: one or more series over ordered labels (days, weeks, months),
  with the first and last label and the largest value on the axes.
"""

from __future__ import annotations

import itertools

from markupsafe import Markup, escape

GOOD = "#2e7d32"
BAD = "#c62828"
GREY = "#eeeeee"
INK = "#333333"
SERIES_COLOURS = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a")
_ids = itertools.count(1)


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def bars(title: str, rows: list[tuple[str, int, int]], part_label: str = "", width=560) -> Markup:
    """rows: (label, total, part). The part (drawn red) is a share of the total."""
    chart_id = f"chart-{next(_ids)}"
    row_height, label_width, gap = 22, 170, 6
    bar_space = width - label_width - 60
    largest = max([total for _label, total, _part in rows] or [0]) or 1
    height = max(len(rows), 1) * row_height + 10
    described = "; ".join(f"{label}: {total}" for label, total, _part in rows)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(described)}</desc>',
    ]
    for index, (label, total, part) in enumerate(rows):
        y = 5 + index * row_height
        full = bar_space * total / largest
        red = bar_space * part / largest
        shown = escape(label if len(label) <= 14 else label[:13] + "…")
        out.append(
            f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end" font-size="12" '
            f'fill="{INK}">{shown}</text>'
        )
        out.append(
            f'<rect x="{label_width}" y="{y}" width="{full - red:.1f}" '
            f'height="{row_height - gap}" fill="{GOOD}"><title>{escape(label)}: '
            f"{total}</title></rect>"
        )
        if part:
            out.append(
                f'<rect x="{label_width + full - red:.1f}" y="{y}" width="{red:.1f}" '
                f'height="{row_height - gap}" fill="{BAD}"><title>{escape(label)} '
                f"{escape(part_label)}: {part}</title></rect>"
            )
        out.append(
            f'<text x="{label_width + full + 4:.1f}" y="{y + 15}" font-size="12" '
            f'fill="{INK}">{total}</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def lines(title: str, labels: list[str], series: list[tuple[str, list]], width=640) -> Markup:
    """series: (name, values) over `labels`; None values leave a gap."""
    chart_id = f"chart-{next(_ids)}"
    height, left, right, top, bottom = 240, 50, 20, 20, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _name, vs in series for v in vs if v is not None]
    largest = max(values or [0]) or 1
    count = max(len(labels), 1)

    def x(index):
        return left + (plot_w * index / (count - 1) if count > 1 else plot_w / 2)

    def y(value):
        return top + plot_h - plot_h * value / largest

    described = "; ".join(
        f"{name}: " + ", ".join(f"{label} {_number(v)}" for label, v in zip(labels, vs, strict=False) if v is not None)  # noqa: E501
        for name, vs in series
    )  # fmt: skip
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(described)}</desc>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        f'stroke="{INK}"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="{INK}"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" font-size="11">'
        f"{_number(largest)}</text>",
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    if labels:
        out.append(f'<text x="{left}" y="{height - 18}" font-size="11">{escape(labels[0])}</text>')
        if len(labels) > 1:
            out.append(
                f'<text x="{left + plot_w}" y="{height - 18}" text-anchor="end" '
                f'font-size="11">{escape(labels[-1])}</text>'
            )
    for number, (name, vs) in enumerate(series):
        colour = SERIES_COLOURS[number % len(SERIES_COLOURS)]
        points = [(x(i), y(v)) for i, v in enumerate(vs) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            out.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>'
            )
        present = [(lb, v) for lb, v in zip(labels, vs, strict=False) if v is not None]
        for (px, py), (label, v) in zip(points, present, strict=True):
            out.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)} {escape(label)}: {_number(v)}</title></circle>"
            )
        out.append(
            f'<rect x="{left + number * 120}" y="{height - 12}" width="10" height="10" '
            f'fill="{colour}"/><text x="{left + 14 + number * 120}" y="{height - 3}" '
            f'font-size="11">{escape(name)}</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))
