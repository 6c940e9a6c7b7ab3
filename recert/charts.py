"""Charts drawn on the server as inline SVG: no JavaScript, no CDN, nothing the strict
Content-Security-Policy would block, and they print. Shared by the IAM console and the
evidence bundle's summary.

Each bar is one `rect.bar` and each pie slice one `.slice`, carrying its value in
`data-value` and a `<title>` a pointer shows; labels are untrusted text made visible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from emails.text import visible

PALETTE = ("#1d4ed8", "#0f766e", "#b45309", "#7c3aed", "#be123c", "#4d7c0f", "#0369a1")
RISK_COLORS = {"high": "#b42318", "medium": "#b45309", "low": "#15803d"}
_LABEL_CHARS = 24


def _text(value: object) -> str:
    return escape(visible(str(value)), quote=True)


def _short(label: str, limit: int = _LABEL_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _number(value: float, percent: bool) -> str:
    if percent:
        return f"{value:.0f}%"
    return f"{value:g}"


def bar_chart(
    title: str,
    bars: Sequence[tuple[str, float]],
    *,
    percent: bool = False,
    color: str = PALETTE[0],
    empty: str = "Nothing to show yet.",
) -> Markup:
    """Vertical bars, one per (label, value); percentages run on a 0-100 axis."""
    if not bars:
        return Markup(f'<p class="chart-empty">{_text(empty)}</p>')  # noqa: S704 - escaped
    slot = max(18, min(56, 360 // len(bars)))
    longest = max(len(_short(label)) for label, _ in bars)
    # Labels are rotated 35 degrees and end under their bar: room for the first one's length.
    left = max(40, round(longest * 5.2 * math.cos(math.radians(35))) - slot // 2 + 8)
    top, plot_height, label_room = 16, 160, round(longest * 5.2 * 0.6) + 20
    width = left + slot * len(bars) + 8
    height = top + plot_height + label_room
    top_value = 100.0 if percent else max(1.0, max(value for _, value in bars))
    parts = [
        f'<svg class="chart bars" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'style="max-width:100%;height:auto" '
        f'aria-label="{_text(title)}"><title>{_text(title)}</title>',
        f'<line x1="{left}" y1="{top + plot_height}" x2="{width - 4}" '
        f'y2="{top + plot_height}" stroke="#9aa5b1"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11" '
        f'fill="#52606d">{_number(top_value, percent)}</text>',
        f'<text x="{left - 6}" y="{top + plot_height}" text-anchor="end" font-size="11" '
        f'fill="#52606d">0</text>',
    ]
    for index, (label, value) in enumerate(bars):
        bar_height = round(plot_height * min(value, top_value) / top_value, 1)
        x = left + index * slot + slot * 0.15
        y = top + plot_height - bar_height
        bar_width = slot * 0.7
        center = x + bar_width / 2
        parts.append(
            f'<rect class="bar" data-value="{value:g}" x="{x:.1f}" y="{y:.1f}" '
            f'width="{bar_width:.1f}" height="{bar_height}" fill="{color}">'
            f"<title>{_text(label)}: {_number(value, percent)}</title></rect>"
        )
        if value:
            parts.append(
                f'<text x="{center:.1f}" y="{y - 3:.1f}" text-anchor="middle" font-size="10" '
                f'fill="#1f2933">{_number(value, percent)}</text>'
            )
        label_y = top + plot_height + 12
        parts.append(
            f'<text x="{center:.1f}" y="{label_y}" font-size="10" fill="#334e68" '
            f'text-anchor="end" transform="rotate(-35 {center:.1f} {label_y})">'
            f"{_text(_short(label))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in parts went through _text


def pie_chart(
    title: str,
    slices: Sequence[tuple[str, float]],
    *,
    colors: dict[str, str] | None = None,
    empty: str = "Nothing to show yet.",
) -> Markup:
    """A donut: one slice per (label, value) above zero, with a legend beside it."""
    shown = [(label, value) for label, value in slices if value > 0]
    total = sum(value for _, value in shown)
    if not total:
        return Markup(f'<p class="chart-empty">{_text(empty)}</p>')  # noqa: S704 - escaped
    radius, inner, cx, cy = 70, 38, 80, 80
    width, height = 330, 160
    parts = [
        f'<svg class="chart pie" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'style="max-width:100%;height:auto" '
        f'aria-label="{_text(title)}"><title>{_text(title)}</title>'
    ]
    start = -math.pi / 2
    for index, (label, value) in enumerate(shown):
        color = (colors or {}).get(label) or PALETTE[index % len(PALETTE)]
        share = value / total
        tooltip = f"<title>{_text(label)}: {value:g} ({share:.0%})</title>"
        if share >= 0.9999:
            parts.append(
                f'<circle class="slice" data-value="{value:g}" cx="{cx}" cy="{cy}" '
                f'r="{(radius + inner) / 2}" fill="none" stroke="{color}" '
                f'stroke-width="{radius - inner}">{tooltip}</circle>'
            )
        else:
            end = start + share * 2 * math.pi
            parts.append(
                f'<path class="slice" data-value="{value:g}" '
                f'd="{_arc(cx, cy, radius, inner, start, end)}" fill="{color}">{tooltip}</path>'
            )
            start = end
        legend_y = 24 + index * 20
        parts.append(
            f'<rect x="176" y="{legend_y - 10}" width="12" height="12" fill="{color}"/>'
            f'<text x="194" y="{legend_y}" font-size="12" fill="#1f2933">'
            f"{_text(_short(label, 20))}: {value:g} ({share:.0%})</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in parts went through _text


def _arc(cx: float, cy: float, outer: float, inner: float, start: float, end: float) -> str:
    large = 1 if end - start > math.pi else 0

    def point(radius: float, angle: float) -> str:
        return f"{cx + radius * math.cos(angle):.2f} {cy + radius * math.sin(angle):.2f}"

    return (
        f"M {point(outer, start)} A {outer} {outer} 0 {large} 1 {point(outer, end)} "
        f"L {point(inner, end)} A {inner} {inner} 0 {large} 0 {point(inner, start)} Z"
    )
