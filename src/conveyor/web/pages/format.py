"""How numbers, ages and times read on the dashboard, and the server-drawn sparkline."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from conveyor.human import byte_size, run_time, span

NONE = "\u2013"  # an en dash: shown where there is no value


def count(value: int | float | None) -> str:
    """1234567 -> "1,234,567"; None -> an en dash."""
    if value is None:
        return NONE
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def age(seconds: float | None) -> str:
    """A short human age: "42s", "3m 20s", "5h 2m", "3d 4h"; None -> an en dash."""
    return NONE if seconds is None else span(seconds)


def memory(count: int | None) -> str:
    """Resident memory: "123 MiB"; None (not reported) -> an en dash."""
    return NONE if count is None else byte_size(count)


def run_duration(seconds: float | None) -> str:
    """An average run time to a tenth of a millisecond: "12.3 ms"; None -> an en dash."""
    return NONE if seconds is None else run_time(seconds)


def duration(seconds: float | None) -> str:
    """An attempt's run time: milliseconds under a second, else as `age`."""
    if seconds is None:
        return NONE
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return age(seconds)


def when(moment: datetime | None) -> str:
    """A timestamp in UTC to the second, the way the CLI and the logs print it."""
    if moment is None:
        return NONE
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def stamp(moment: datetime | None) -> str:
    """A timestamp in UTC for table cells, where the column heading says "UTC"."""
    if moment is None:
        return NONE
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def since(moment: datetime | None, now: datetime) -> str:
    """How long ago `moment` was, by `now` (PostgreSQL's clock, never this host's)."""
    if moment is None:
        return NONE
    return age(max(0.0, (now - moment).total_seconds())) + " ago"


def pretty_json(value: Any) -> str:
    """Payloads as operators read them: indented, keys in stored order, non-ASCII kept."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def shorten(text: str | None, limit: int = 120) -> str:
    """The first line of an error message, cut to `limit` characters."""
    if not text:
        return ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def sentence(text: str) -> str:
    """`text` with a capital first letter and the rest untouched (queue names keep case)."""
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Spark:
    points: str  # SVG polyline points; empty when there is nothing to draw
    label: str
    width: int
    height: int


def sparkline(values: Sequence[float], width: int = 96, height: int = 24) -> Spark:
    """The polyline of `values` (oldest first), scaled to its own maximum, for an inline
    SVG drawn on the server so the page needs no chart library."""
    if not values:
        return Spark("", "no throughput history yet", width, height)
    peak = max(max(values), 0.0)
    label = f"completions per minute: now {values[-1]:g}, peak {peak:g}"
    pad = 2.0
    span = max(len(values) - 1, 1)
    coords = []
    for index, value in enumerate(values):
        x = pad + (width - 2 * pad) * (index / span if len(values) > 1 else 1.0)
        scaled = value / peak if peak > 0 and math.isfinite(value) else 0.0
        y = height - pad - (height - 2 * pad) * scaled
        coords.append((x, y))
    if len(coords) == 1:  # one sample: a level line, so it is visible at all
        coords.insert(0, (pad, coords[0][1]))
    return Spark(" ".join(f"{x:.1f},{y:.1f}" for x, y in coords), label, width, height)


FILTERS = {
    "count": count,
    "age": age,
    "duration": duration,
    "memory": memory,
    "run_duration": run_duration,
    "when": when,
    "stamp": stamp,
    "pretty_json": pretty_json,
    "shorten": shorten,
}
