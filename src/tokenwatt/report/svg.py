"""Inline SVG line charts and CDFs: plain strings, no JavaScript, no network, no dependencies."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tokenwatt.errors import ConfigError

__all__ = ["PALETTE", "Series", "cdf_chart", "cdf_points", "line_chart", "nice_ticks"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")
"""Line colours, in series order (colour-blind-friendly first pairs)."""


@dataclass(frozen=True)
class Series:
    """One line: a name for the legend and its (x, y) points."""

    name: str
    """Legend label."""
    points: Sequence[tuple[float, float]]
    """Points in drawing order."""
    step: bool = False
    """Draw as a step function (CDFs, counts per bin)."""
    dashed: bool = False
    """Draw dashed, so a line lying on another stays visible."""


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi] (steps of 1, 2 or 5 x 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ConfigError("chart bounds must be finite numbers")
    span = max(abs(lo), abs(hi), 1.0)
    if hi - lo < span * 1e-9:
        # A flat line: widen around it so the axis has room (and steps stay above float noise).
        pad = span * 0.05
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    n = math.ceil((hi - first) / step - 1e-9)
    return [round(first + i * step, 12) for i in range(n + 1)]


def cdf_points(values: Sequence[float]) -> list[tuple[float, float]]:
    """Empirical CDF: (value, share of values <= it) for each sorted value."""
    ordered = sorted(values)
    n = len(ordered)
    return [(v, (i + 1) / n) for i, v in enumerate(ordered)]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def line_chart(
    series: Sequence[Series],
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    width: int = 640,
    height: int = 320,
    y_min: float | None = None,
) -> str:
    """An SVG line chart of ``series`` with axes, round ticks and a legend."""
    pts = [p for s in series for p in s.points if math.isfinite(p[0]) and math.isfinite(p[1])]
    esc = html.escape
    if not pts:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60" role="img">'
            f'<text x="10" y="35" font-size="13">{esc(title)}: no data</text></svg>'
        )
    left, right, top, bottom = 64, 16, 28, 44
    xt = nice_ticks(min(p[0] for p in pts), max(p[0] for p in pts))
    y_lo = min(p[1] for p in pts) if y_min is None else y_min
    yt = nice_ticks(y_lo, max(p[1] for p in pts))
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - xt[0]) / (xt[-1] - xt[0]) * pw

    def sy(y: float) -> float:
        return top + ph - (y - yt[0]) / (yt[-1] - yt[0]) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{esc(title)}</text>',
    ]
    for t in xt:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 14}" text-anchor="middle">{_fmt(t)}</text>')
    for t in yt:
        y = sy(t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    out.append(
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>'
        f'<text x="{left + pw / 2:.1f}" y="{height - 8}" text-anchor="middle">{esc(x_label)}</text>'
        f'<text x="14" y="{top + ph / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + ph / 2:.1f})">{esc(y_label)}</text>'
    )
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        coords: list[str] = []
        prev_y: float | None = None
        for x, y in s.points:
            if not (math.isfinite(x) and math.isfinite(y)):
                continue
            if s.step and prev_y is not None:
                coords.append(f"{sx(x):.1f},{sy(prev_y):.1f}")
            coords.append(f"{sx(x):.1f},{sy(y):.1f}")
            prev_y = y
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        out.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.6"{dash} '
            f'points="{" ".join(coords)}"><title>{esc(s.name)}</title></polyline>'
        )
        ly = top + 12 + 14 * i
        out.append(
            f'<line x1="{left + pw - 130}" y1="{ly - 4}" x2="{left + pw - 114}" y2="{ly - 4}" '
            f'stroke="{colour}" stroke-width="2"{dash}/>'
            f'<text x="{left + pw - 110}" y="{ly}">{esc(s.name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def cdf_chart(
    samples: Mapping[str, Sequence[float]], title: str = "", x_label: str = "", **kw: int
) -> str:
    """An SVG CDF of each named sample set (share of values <= x)."""
    series = [Series(name, cdf_points(v), step=True) for name, v in samples.items() if v]
    return line_chart(series, title, x_label, "share <= x", y_min=0.0, **kw)
