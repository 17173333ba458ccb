"""Line charts of the metrics history as SVG drawn on the server, so the dashboard needs
no chart library, no build step and no script: axes, gridlines, time labels, a legend and
one polyline per series. Colours come from classes in dashboard.css (the page's CSP
allows no inline style); every text is escaped."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup

from conveyor.admin.history import HistoryPoint, downsample

WIDTH = 720
HEIGHT = 220
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 28, 26
MOST_POINTS = 240  # three pixels a point: finer would not show
X_LABELS = 6
Y_TICKS = 4


@dataclass(frozen=True)
class Series:
    name: str  # the legend's word, and the CSS class `series-<name>`
    value: Callable[[HistoryPoint], float | None]


THROUGHPUT = (
    Series("completed", lambda p: p.completed),
    Series("failed", lambda p: p.failed),
    Series("enqueued", lambda p: p.enqueued),
)
LATENCY = (
    Series("run-p95", lambda p: p.run_p95),
    Series("wait-p95", lambda p: p.wait_p95),
)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `value`, so
    the axis reads in round numbers."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = math.pow(10.0, math.floor(math.log10(value)))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * power >= value * (1 - 1e-9):
            return step * power
    return 10.0 * power


def line_chart(
    points: Sequence[HistoryPoint],
    series: Sequence[Series],
    *,
    title: str,
    unit: str = "",
    step: timedelta = timedelta(minutes=1),
) -> Markup:
    """An SVG line chart of `series` over `points` (oldest first); an empty frame that
    says so when there are no points."""
    shown = downsample(list(points), MOST_POINTS)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    values = [[s.value(p) for p in shown] for s in series]
    known = [v for row in values for v in row if v is not None and math.isfinite(v)]
    # Round steps (2.5, 5, 10, ...) so every gridline reads as a round number.
    top = nice_ceiling(max(known, default=0.0) / Y_TICKS) * Y_TICKS
    parts = [
        Markup(
            '<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img"'
            ' aria-label="{title}" data-points="{n}" xmlns="http://www.w3.org/2000/svg">'
            '<title>{title}</title><text class="chart-title" x="{x}" y="16">{title}</text>'
        ).format(w=WIDTH, h=HEIGHT, title=title, n=len(shown), x=LEFT)
    ]
    for tick in range(Y_TICKS + 1):
        y = f"{TOP + plot_h - plot_h * tick / Y_TICKS:.1f}"
        parts.append(
            Markup(
                '<line class="chart-grid" x1="{x1}" y1="{y}" x2="{x2}" y2="{y}"/>'
                '<text class="chart-axis" x="{tx}" y="{ty}" text-anchor="end">{label}</text>'
            ).format(
                x1=LEFT,
                x2=LEFT + plot_w,
                y=y,
                tx=LEFT - 6,
                ty=f"{float(y) + 4:.1f}",
                label=_number(top * tick / Y_TICKS, unit),
            )
        )
    if not shown:
        parts.append(
            Markup(
                '<text class="chart-empty" x="{x}" y="{y}" text-anchor="middle">'
                "no history yet</text>"
            ).format(x=LEFT + plot_w / 2, y=TOP + plot_h / 2)
        )
        return Markup("").join([*parts, Markup("</svg>")])
    span = max(len(shown) - 1, 1)

    def x_of(index: int) -> float:
        return LEFT + plot_w * (index / span if len(shown) > 1 else 0.5)

    positions = _label_positions(len(shown))
    for index in positions:
        # The outer labels lean inwards, so neither is cut off at the frame.
        anchor = "start" if index == 0 else "end" if index == positions[-1] else "middle"
        parts.append(
            Markup(
                '<text class="chart-axis" x="{x:.1f}" y="{y}" text-anchor="{anchor}">{label}</text>'
            ).format(
                x=x_of(index),
                y=HEIGHT - 8,
                anchor=anchor,
                label=_time_label(shown[index].bucket, step),
            )
        )
    for kind, row in zip(series, values, strict=True):
        coords = [
            f"{x_of(i):.1f},{TOP + plot_h - plot_h * (v / top):.1f}"
            for i, v in enumerate(row)
            if v is not None and math.isfinite(v)
        ]
        if coords:
            parts.append(
                Markup(
                    '<polyline class="series series-{name}" fill="none" points="{points}"/>'
                ).format(name=kind.name, points=" ".join(coords))
            )
    parts.extend(_legend(series, values, unit))
    return Markup("").join([*parts, Markup("</svg>")])


def _legend(series: Sequence[Series], values: list[list[float | None]], unit: str) -> list[Markup]:
    parts = []
    x = WIDTH - RIGHT
    for kind, row in reversed(list(zip(series, values, strict=True))):
        known = [v for v in row if v is not None]
        figure = sum(known) if not unit else max(known, default=0.0)
        label = f"{kind.name.replace('-', ' ')} {_number(figure, unit)}"
        x -= 12 + 7 * len(label)
        parts.append(
            Markup(
                '<g class="legend"><line class="series series-{name}" x1="{x}" y1="12"'
                ' x2="{x2}" y2="12"/><text class="chart-axis" x="{tx}" y="16">{label}</text></g>'
            ).format(name=kind.name, x=x, x2=x + 8, tx=x + 11, label=label)
        )
    return parts


def _label_positions(count: int) -> list[int]:
    if count <= 1:
        return [0]
    gaps = min(X_LABELS - 1, count - 1)
    return sorted({round(i * (count - 1) / gaps) for i in range(gaps + 1)})


def _time_label(moment: datetime, step: timedelta) -> str:
    return moment.strftime("%m-%d %H:%M" if step >= timedelta(hours=1) else "%H:%M")


def _number(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3g} s" if value < 60 else f"{value / 60:.3g} min"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:g}" if value == int(value) else f"{value:.3g}"
