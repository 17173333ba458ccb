"""Global rate and concurrency limits: what a limit is, which one applies to a job, and
how many jobs a dispatch may take under them. No I/O here: the queuer's limited dispatch
(conveyor.limited_dispatch) reads the figures from PostgreSQL and asks this module.

A scope is "queue:<name>", "task:<name>" or "key:<limit_key>". A key scope whose name
holds *, ? or [ is a pattern (fnmatch): each key that matches it gets a limit of its own
with those numbers. An exact key wins over every pattern; among patterns the most
specific wins (most characters that are not wildcards, then the longest, then the first
in alphabetical order), so the choice never depends on file order. `limits.default_key`
is the pattern "*", the least specific of all.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.vocabulary import SCOPE_KEY, SCOPE_KINDS, SCOPE_QUEUE, SCOPE_TASK

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# A window shorter than a second would be measured mostly in bucket rounding
# (vocabulary.START_BUCKET_SECONDS); a day is the longest the ledger keeps.
MIN_PERIOD = 1.0
MAX_PERIOD = 86400.0
MAX_COUNT = 2**31 - 1
MAX_KEY_LENGTH = 200
_WILDCARDS = frozenset("*?[")
_RATE_HELP = 'write N/unit or N/<number><unit>, unit s, m, h or d: "100/s", "20/m", "5/10s"'


@dataclass(frozen=True)
class Rate:
    count: int
    period: float  # seconds

    def __str__(self) -> str:
        for unit, seconds in reversed(_UNITS.items()):
            amount = self.period / seconds
            if amount >= 1 and amount == int(amount):
                return f"{self.count}/{'' if amount == 1 else int(amount)}{unit}"
        return f"{self.count}/{self.period:g}s"


def parse_rate(text: Any) -> Rate:
    """ "100/s" -> Rate(100, 1.0); ValueError naming what is wrong."""
    if isinstance(text, Rate):
        return text
    if not isinstance(text, str):
        raise ValueError(f"a rate must be text like '100/s', not {text!r}")
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"invalid rate {text!r}: {_RATE_HELP}")
    count = int(match.group(1))
    period = float(match.group(2) or 1) * _UNITS[match.group(3)]
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"invalid rate {text!r}: the count must be from 1 to {MAX_COUNT}")
    if not (math.isfinite(period) and MIN_PERIOD <= period <= MAX_PERIOD):
        raise ValueError(f"invalid rate {text!r}: the period must be from 1 s to 1 day")
    return Rate(count, period)


def check_concurrency(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
        raise ValueError(f"a concurrency limit must be a positive integer, not {value!r}")
    return value


def check_limit_key(key: Any) -> str:
    """1-200 characters, no control characters (the jobs_limit_key_check CHECK agrees)."""
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= MAX_KEY_LENGTH
        or any(ord(char) < 32 or 127 <= ord(char) < 160 for char in key)
    ):
        raise ValueError(
            f"limit_key {key!r} must be 1-{MAX_KEY_LENGTH} characters without control characters"
        )
    return key


def scope(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def check_scope(text: Any) -> str:
    """ "queue:emails", "task:app.send", "key:example.com" or a key pattern "key:*.gmail.com"."""
    if not isinstance(text, str) or ":" not in text:
        kinds = ", ".join(f"{kind}:<name>" for kind in SCOPE_KINDS)
        raise ValueError(f"a limit's scope is one of {kinds}, not {text!r}")
    kind, _, name = text.partition(":")
    if kind not in SCOPE_KINDS:
        raise ValueError(f"unknown scope kind {kind!r} in {text!r}: use queue, task or key")
    if kind == SCOPE_KEY:
        check_limit_key(name)
    elif not 1 <= len(name) <= MAX_KEY_LENGTH:
        raise ValueError(f"scope {text!r} needs a name of 1-{MAX_KEY_LENGTH} characters")
    return text


def is_pattern(key: str) -> bool:
    return bool(_WILDCARDS & set(key))


@dataclass(frozen=True)
class Limit:
    scope: str
    rate: Rate | None
    concurrency: int | None
    source: str = ""

    def __post_init__(self) -> None:
        if self.rate is None and self.concurrency is None:
            raise ValueError(f"limit {self.scope}: give a rate, a concurrency, or both")

    @property
    def kind(self) -> str:
        return self.scope.partition(":")[0]

    @property
    def name(self) -> str:
        return self.scope.partition(":")[2]


def _specificity(pattern: str) -> tuple[int, int, str]:
    literal = sum(1 for char in pattern if char not in _WILDCARDS)
    return (-literal, -len(pattern), pattern)


class LimitBook:
    """Every limit in force, and which one governs a given queue, task or key."""

    def __init__(self, limits: Iterable[Limit]) -> None:
        self.by_scope: dict[str, Limit] = {}
        patterns: list[Limit] = []
        for limit in limits:
            if limit.kind == SCOPE_KEY and is_pattern(limit.name):
                patterns.append(limit)
            else:
                self.by_scope[limit.scope] = limit
        self.patterns = sorted(patterns, key=lambda limit: _specificity(limit.name))
        self.all = [*self.by_scope.values(), *self.patterns]

    def __bool__(self) -> bool:
        return bool(self.all)

    @property
    def limited_queues(self) -> list[str]:
        return sorted(limit.name for limit in self.by_scope.values() if limit.kind == SCOPE_QUEUE)

    def for_key(self, key: str) -> Limit | None:
        """The limit of `key`'s own scope: its exact entry, else the best pattern's numbers."""
        exact = self.by_scope.get(scope(SCOPE_KEY, key))
        if exact is not None:
            return exact
        pattern = self.pattern_for(key)
        if pattern is None:
            return None
        return Limit(scope(SCOPE_KEY, key), pattern.rate, pattern.concurrency, pattern.source)

    def pattern_for(self, key: str) -> Limit | None:
        """The most specific pattern `key` matches."""
        for pattern in self.patterns:
            if fnmatch.fnmatchcase(key, pattern.name):
                return pattern
        return None

    def governing(self, queue: str, task: str, key: str | None) -> list[Limit]:
        """The limits a job of this queue, task and key must fit in, each in its own scope."""
        found = [
            self.by_scope.get(scope(SCOPE_QUEUE, queue)),
            self.by_scope.get(scope(SCOPE_TASK, task)),
            self.for_key(key) if key is not None else None,
        ]
        return [limit for limit in found if limit is not None]


@dataclass(frozen=True)
class Usage:
    """One scope's figures in one snapshot: jobs dispatched or running, of which dispatched
    (not started yet), starts in the rate window, and when the oldest counted start leaves
    the window (seconds from now; None without starts)."""

    scope: str
    in_flight: int
    dispatched: int
    window_starts: int
    frees_in: float | None


def budget(limit: Limit, usage: Usage | None) -> int:
    """How many more jobs of the scope may be dispatched now."""
    in_flight = usage.in_flight if usage else 0
    left = MAX_COUNT
    if limit.concurrency is not None:
        left = min(left, limit.concurrency - in_flight)
    if limit.rate is not None:
        started = (usage.window_starts + usage.dispatched) if usage else 0
        left = min(left, limit.rate.count - started)
    return max(left, 0)


@dataclass(frozen=True)
class Candidate:
    id: Any
    queue_name: str
    task: str
    limit_key: str | None
    priority: int
    run_at: Any


@dataclass(frozen=True)
class Pick:
    candidate: Candidate
    rate_scopes: tuple[str, ...]


def pick(
    candidates: Sequence[Candidate],
    book: LimitBook,
    budgets: Mapping[str, int],
    room: Mapping[str, int],
    batch: int,
) -> list[Pick]:
    """The most urgent candidates (priority, then run_at) that fit every budget of their
    scopes, the room left in their queue's Redis buffer and `batch` per queue."""
    left = dict(budgets)
    space = {queue: min(free, batch) for queue, free in room.items()}
    chosen = []
    for candidate in sorted(candidates, key=lambda c: (c.priority, c.run_at)):
        if space.get(candidate.queue_name, 0) <= 0:
            continue
        limits = book.governing(candidate.queue_name, candidate.task, candidate.limit_key)
        if any(left.get(limit.scope, 0) <= 0 for limit in limits):
            continue
        for limit in limits:
            left[limit.scope] -= 1
        space[candidate.queue_name] -= 1
        rated = tuple(limit.scope for limit in limits if limit.rate is not None)
        chosen.append(Pick(candidate, rated))
    return chosen
