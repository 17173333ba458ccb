"""Human units used in configuration (durations, byte sizes) and pydantic field types for them.

Durations follow Go's ``time.ParseDuration`` syntax (``250ms``, ``1m30s``, ``2h``) because
operators already write that in neighbouring tools, plus ``d`` for days (retention periods) and
bare numbers meaning seconds. Everything is returned as float seconds.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Annotated

from annotated_types import Ge, Gt, Le
from pydantic import BeforeValidator

__all__ = [
    "ByteSize",
    "CommaList",
    "Int",
    "Interval",
    "NonNegDuration",
    "NonNegInt",
    "OptInterval",
    "OptStr",
    "Port",
    "PosInt",
    "format_duration",
    "lowercase",
    "none_if_blank",
    "parse_duration",
    "parse_size",
    "split_commas",
]

_DURATION_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 MICRO SIGN, what Go prints
    "μs": 1e-6,  # U+03BC GREEK SMALL LETTER MU, what people type
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
# Longest units first so "ms" is not read as "m" followed by garbage.
_UNIT_ALTERNATION = "|".join(sorted(_DURATION_UNITS, key=len, reverse=True))
_DURATION_PART = re.compile(rf"(\d+(?:\.\d*)?|\.\d+)({_UNIT_ALTERNATION})")
_BARE_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_DURATION_HELP = "use seconds (30, 0.5) or units ns us ms s m h d, e.g. 250ms, 30s, 1m30s, 7d"


def parse_duration(value: str | float) -> float:
    """Return ``value`` as seconds; raises ``ValueError`` with a message fit for an operator."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a duration, got {type(value).__name__}; {_DURATION_HELP}")
    if not isinstance(value, str):
        seconds = float(value)
    else:
        text = value.strip()
        seconds = float(text) if _BARE_NUMBER.fullmatch(text) else _parse_units(text, value)
    if not math.isfinite(seconds):
        raise ValueError(f"duration {value!r} is not a finite number")
    return seconds


def _parse_units(text: str, original: str) -> float:
    sign = 1.0
    if text[:1] in ("+", "-"):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError(f"invalid duration {original!r}: {_DURATION_HELP}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError(f"invalid duration {original!r}: {_DURATION_HELP}")
    return sign * total


def format_duration(seconds: float) -> str:
    """Shortest readable form that ``parse_duration`` reads back to the same value."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds == 0:
        return "0s"
    if seconds < 1:
        millis = seconds * 1000
        return f"{millis:g}ms" if millis == round(millis, 6) else f"{seconds!r}s"
    parts: list[str] = []
    whole = int(seconds)
    fraction = seconds - whole
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    if whole or fraction:
        rest = whole + fraction
        parts.append(f"{rest:g}s" if float(f"{rest:g}") == rest else f"{rest!r}s")
    return "".join(parts)


_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)", re.IGNORECASE)
_SIZE_HELP = "use a number of bytes or units B KB MB GB KiB MiB GiB, e.g. 512KiB, 1MiB, 1MB"


def parse_size(value: str | float) -> int:
    """Return ``value`` as a whole number of bytes; ``ValueError`` if it is not one."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a size, got {type(value).__name__}; {_SIZE_HELP}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"size {value!r} is not a whole number of bytes")
        return int(value)
    match = _SIZE.fullmatch(value.strip())
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"invalid size {value!r}: {_SIZE_HELP}")
    # Fraction keeps "1.5KiB" exact; floats would turn some sizes into 1535.9999.
    amount = Fraction(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if amount.denominator != 1:
        raise ValueError(f"size {value!r} is not a whole number of bytes")
    return int(amount)


# --------------------------------------------------------------------------------------------
# Field types: each coerces the text an environment variable or YAML scalar gives.


def _as_duration(value: object) -> object:
    # Anything else falls through to pydantic, whose "valid number" message is accurate enough.
    return parse_duration(value) if isinstance(value, str | int | float) else value


def _as_size(value: object) -> object:
    return parse_size(value) if isinstance(value, str | int | float) else value


def none_if_blank(value: object) -> object:
    # An empty environment variable is the only way to unset an optional value from a shell.
    if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
        return None
    return value


def _opt_duration(value: object) -> object:
    value = none_if_blank(value)
    return None if value is None else _as_duration(value)


def _reject_bool(value: object) -> object:
    # YAML turns `yes` into True, and pydantic would then quietly read it as the number 1.
    if isinstance(value, bool):
        raise ValueError("expected a whole number, got a boolean")
    return value


def lowercase(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


Interval = Annotated[float, Gt(0), BeforeValidator(_as_duration)]
NonNegDuration = Annotated[float, Ge(0), BeforeValidator(_as_duration)]
OptInterval = Annotated[Annotated[float, Gt(0)] | None, BeforeValidator(_opt_duration)]
Int = Annotated[int, BeforeValidator(_reject_bool)]
PosInt = Annotated[int, Ge(1), BeforeValidator(_reject_bool)]
NonNegInt = Annotated[int, Ge(0), BeforeValidator(_reject_bool)]
Port = Annotated[int, Ge(0), Le(65535), BeforeValidator(_reject_bool)]
CommaList = Annotated[list[str], BeforeValidator(split_commas)]
OptStr = Annotated[str | None, BeforeValidator(none_if_blank)]
ByteSize = Annotated[int, Ge(1), BeforeValidator(_as_size)]
