"""How numbers, ages and times read on the dashboard, and the server-drawn sparkline."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape


def count(value: int | float | None) -> str:
    """1234567 -> "1,234,567"; None -> an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def age(seconds: float | None) -> str:
    """A short human age: "42s", "3m 20s", "5h 2m", "3d 4h"; None -> an en dash."""
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def duration(seconds: float | None) -> str:
    """An attempt's run time: milliseconds under a second, else as `age`."""
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return age(seconds)


def when(moment: datetime | None) -> str:
    """A timestamp in UTC to the second, the way the CLI and the logs print it."""
    if moment is None:
        return "–"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def since(moment: datetime | None, now: datetime) -> str:
    """How long ago `moment` was, by `now` (PostgreSQL's clock, never this host's)."""
    if moment is None:
        return "–"
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


def sparkline(values: Sequence[float], width: int = 96, height: int = 24) -> Markup:
    """An inline SVG line of `values` (oldest first), scaled to its own maximum.

    Drawn on the server so the page needs no chart library; an empty series draws
    nothing but still keeps the cell's size, so rows do not jump as history fills in.
    """
    label = "no throughput history yet"
    points = ""
    if values:
        peak = max(max(values), 0.0)
        last = values[-1]
        label = f"completions per minute, last {last:g} (peak {peak:g})"
        span = max(len(values) - 1, 1)
        pad = 2.0
        coords = []
        for index, value in enumerate(values):
            x = pad + (width - 2 * pad) * (index / span if len(values) > 1 else 1.0)
            scaled = 0.0 if peak <= 0 or not math.isfinite(value) else value / peak
            y = height - pad - (height - 2 * pad) * scaled
            coords.append(f"{x:.1f},{y:.1f}")
        if len(coords) == 1:
            coords.insert(0, f"{pad:.1f},{coords[0].split(',')[1]}")
        points = " ".join(coords)
    line = f'<polyline points="{points}" fill="none"/>' if points else ""
    return Markup(
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>{line}</svg>'
    )


FILTERS = {
    "count": count,
    "age": age,
    "duration": duration,
    "when": when,
    "pretty_json": pretty_json,
    "shorten": shorten,
}
