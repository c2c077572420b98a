"""Small server-side SVG charts (no JavaScript, no CDN): bars and multi-series lines.

Pure functions from numbers to SVG markup; labels are escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from html import escape

PALETTE = ("#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#dc2626", "#4b5563")


def nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 2.5, 5 x 10^n)."""
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return float(step * exp)
    return float(10 * exp)


def format_number(value: float) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:g}"


def bar_chart(items: Sequence[tuple[str, float]], width: int = 640, height: int = 220, title: str = "") -> str:
    """Vertical bars with the value above each bar and the label below."""
    if not items:
        return ""
    left, right, top, bottom = 44, 8, 18, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = nice_max(max(v for _, v in items))
    slot = plot_w / len(items)
    bar_w = max(4.0, slot * 0.7)
    label_every = max(1, math.ceil(len(items) * 48 / plot_w))  # keep labels about 48 px apart
    parts = [_open(width, height, title), *_y_axis(left, top, plot_w, plot_h, top_value)]
    for i, (label, value) in enumerate(items):
        h = plot_h * (value / top_value)
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h - h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" rx="2">'
            f"<title>{escape(label)}: {value:g}</title></rect>"
        )
        if value:
            parts.append(
                f'<text class="val" x="{x + bar_w / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle">'
                f"{format_number(value)}</text>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text class="lbl" x="{x + bar_w / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    series: dict[str, list[tuple[date | datetime, float]]], width: int = 760, height: int = 280, title: str = ""
) -> str:
    """One line per series over a shared date axis, with a legend."""
    points = [p for pts in series.values() for p in pts]
    if not points:
        return ""
    left, right, top, bottom = 52, 12, 16, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    days = sorted({_day(x) for x, _ in points})
    first, last = days[0], days[-1]
    span = max(1, (last - first).days)
    top_value = nice_max(max(v for _, v in points))
    parts = [_open(width, height, title), *_y_axis(left, top, plot_w, plot_h, top_value)]

    def x_of(d: date) -> float:
        return left + plot_w * ((d - first).days / span) if span else left + plot_w / 2

    ticks = sorted({first + (last - first) * k / 4 for k in range(5)}) if first != last else [first]
    for d in ticks:
        anchor = "start" if d == first and len(ticks) > 1 else "end" if d == last and len(ticks) > 1 else "middle"
        parts.append(
            f'<text class="lbl" x="{x_of(d):.1f}" y="{top + plot_h + 16}" text-anchor="{anchor}">{d.isoformat()}</text>'
        )
    for i, (name, pts) in enumerate(sorted(series.items())):
        colour = PALETTE[i % len(PALETTE)]
        coords = [(x_of(_day(x)), top + plot_h - plot_h * (v / top_value), _day(x), v) for x, v in sorted(pts)]
        path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy, _, _ in coords)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for cx, cy, d, v in coords:
            parts.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" fill="{colour}">'
                f"<title>{escape(name)} {d.isoformat()}: {v:,.2f}</title></circle>"
            )
        lx = left + (i % 4) * (plot_w / 4)
        ly = height - 22 + (i // 4) * 14
        parts.append(f'<rect x="{lx:.1f}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text class="lbl" x="{lx + 14:.1f}" y="{ly + 1}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _day(x: date | datetime) -> date:
    return x.date() if isinstance(x, datetime) else x


def _open(width: int, height: int, title: str) -> str:
    label = f' aria-label="{escape(title)}"' if title else ""
    return f'<svg class="chart" viewBox="0 0 {width} {height}" role="img"{label} xmlns="http://www.w3.org/2000/svg">'


def _y_axis(left: int, top: int, plot_w: int, plot_h: int, top_value: float) -> list[str]:
    out = []
    for k in range(5):
        value = top_value * k / 4
        y = top + plot_h - plot_h * k / 4
        out.append(f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="lbl" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{format_number(value)}</text>')
    return out
