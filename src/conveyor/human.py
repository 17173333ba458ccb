"""Figures as an operator reads them, shared by the CLI and the dashboard: spans of time
("1h 2m"), memory ("123 MiB") and per-job run times ("12.3 ms")."""

from __future__ import annotations

_BYTE_UNITS = ("KiB", "MiB", "GiB", "TiB")


def span(seconds: float) -> str:
    """A short span: "4.2s", "42s", "3m 20s", "5h 2m", "3d 4h"."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    # Two units at most, and no "0m" tail: "1h" reads better than "1h 0m".
    for big, big_unit, small, small_unit in (
        (days, "d", hours, "h"),
        (hours, "h", minutes, "m"),
        (minutes, "m", secs, "s"),
    ):
        if big:
            return f"{big}{big_unit} {small}{small_unit}" if small else f"{big}{big_unit}"
    return f"{secs}s"


def byte_size(count: int) -> str:
    """Binary units, three significant digits at most: "512 B", "123 MiB", "1.5 GiB"."""
    if count < 1024:
        return f"{max(0, count)} B"
    value = float(count)
    for unit in _BYTE_UNITS:
        value /= 1024
        if value < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def run_time(seconds: float) -> str:
    """A handler's run time: "0.4 ms", "12.3 ms", "250 ms", "1.25 s", then as `span`."""
    seconds = max(0.0, seconds)
    if seconds < 0.1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.2f} s"
    return span(seconds)
