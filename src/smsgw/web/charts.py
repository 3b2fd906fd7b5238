"""Stacked bar charts drawn as SVG on the server: no script, no library.

`stacked(...)` turns counts into shapes in a fixed drawing box (the SVG's viewBox, which
the page scales to its width); templates/_chart.html draws them, with the same numbers in a
table beside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 480, 220
LEFT, RIGHT, TOP, BOTTOM = 40, 6, 12, 28
#: Each series: its name and the CSS class its bars take, bottom to top.
SERIES = (("delivered", "bar-delivered"), ("sent", "bar-sent"), ("failed", "bar-failed"))


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str


@dataclass(frozen=True)
class Bar:
    """One bar: its parts, what it says on hover, and its label under the axis (or "")."""

    rects: list[Rect]
    title: str
    label: str
    label_x: float
    anchor: str = "middle"  # the first and last labels stay inside the box


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    top: int  # the value at the top of the scale
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    plot_top: int = TOP
    base: int = HEIGHT - BOTTOM

    @property
    def middle(self) -> float:
        return (self.plot_top + self.base) / 2


def nice_top(largest: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at least `largest` (1 at least)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= largest:
                return step * factor
        step *= 10


def stacked(
    values: Sequence[dict[str, int]], titles: Sequence[str], labels: Sequence[str]
) -> Chart:
    """A chart of one bar per item of `values` (a count per series name), with its hover
    title and axis label ("" for none)."""
    top = nice_top(max((sum(v.values()) for v in values), default=0))
    slot = (WIDTH - RIGHT - LEFT) / max(len(values), 1)
    scale = (HEIGHT - BOTTOM - TOP) / top
    bars = []
    for i, counts in enumerate(values):
        x, y = LEFT + i * slot + slot * 0.15, float(HEIGHT - BOTTOM)
        rects = []
        for name, css in SERIES:
            height = counts.get(name, 0) * scale
            if height > 0:
                y -= height
                rects.append(Rect(round(x, 2), round(y, 2), round(slot * 0.7, 2),
                                  round(height, 2), css))  # fmt: skip
        bars.append(Bar(rects, titles[i], labels[i], *_label_at(i, len(values), slot)))
    return Chart(bars, top)


def _label_at(i: int, count: int, slot: float) -> tuple[float, str]:
    """Where bar `i`'s label goes and how it is anchored (inside the box at either end)."""
    if i == count - 1:
        return round(LEFT + count * slot, 2), "end"
    if i == 0:
        return float(LEFT), "start"
    return round(LEFT + (i + 0.5) * slot, 2), "middle"
