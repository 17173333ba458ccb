"""Capped exponential backoff for reconnect loops (not for jobs: see retry.py)."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float = 0.1, cap: float = 5.0) -> None:
        self.initial = initial
        self.cap = cap
        self._current = initial

    def next(self) -> float:
        delay = self._current
        self._current = min(self.cap, self._current * 2)
        # Jitter keeps a fleet of processes from reconnecting in lockstep.
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 - not security

    def reset(self) -> None:
        self._current = self.initial
