"""Server-made SVG charts: no script, no library, readable without colour or pictures.

Why SVG drawn here rather than a charting library (uPlot is ~50 kB minified, Chart.js
~200 kB): a daily chart of three series is a few dozen shapes; drawing them on the server
costs no bytes of JavaScript, nothing for a fresh machine to install (no npm step), works
with JavaScript off and under the strict CSP (presentation attributes only, no inline
style), and is accessible by construction: the ``<svg>`` has ``role="img"``, a
``<title>`` and a ``<desc>`` that says what it shows, and the template puts the same
numbers in a table beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28


@dataclass(frozen=True)
class Series:
    """One line of the chart: its label, colour (AA on white) and values per day."""

    label: str
    colour: str
    values: list[int]


def _nice(top: int) -> int:
    # A round axis maximum: 1, 2, 5 × 10^n at or above the largest value.
    if top <= 0:
        return 1
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= top:
                return m * step
        step *= 10


def line_chart(days: list[str], series: list[Series]) -> dict[str, Any]:
    """The geometry of a line chart of ``series`` over ``days`` (ISO dates)."""
    top = _nice(max((max(s.values, default=0) for s in series), default=0))
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(days), 1)

    def x(i: int) -> float:
        return round(LEFT + (inner_w * (i + 0.5) / n), 1)

    def y(v: int) -> float:
        return round(TOP + inner_h - inner_h * v / top, 1)

    lines = [
        {
            "label": s.label,
            "colour": s.colour,
            "points": " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(s.values)),
            "dots": [(x(i), y(v)) for i, v in enumerate(s.values)] if n <= 31 else [],
        }
        for s in series
    ]
    step = max(1, n // 6)
    ticks = [(x(i), days[i][5:]) for i in range(0, len(days), step)]
    grid = [(y(top * k // 4), f"{top * k // 4:,}") for k in range(5)]
    return {
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT,
        "bottom": TOP + inner_h, "lines": lines, "ticks": ticks, "grid": grid,
    }  # fmt: skip
