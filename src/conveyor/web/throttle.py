"""Login throttling: after a few failures a user name, or a client address, must wait.

The state lives in this process's memory: each `conveyor web` process throttles on its
own, and a restart forgets. That is enough to turn an online guess per millisecond into
a few per hour; the password hashes (scrypt) carry the rest. A user name is locked out
whatever address the guesses come from (a botnet gains nothing), and one address is
locked out whatever names it tries (a spray gains nothing); an address gets more free
failures, as several people may share it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

FREE_FAILURES = {"user": 5, "addr": 20}  # failures forgiven before a lockout
LOCK_SECONDS = 30.0  # the first lockout; each further failure doubles it
MAX_LOCK_SECONDS = 900.0
FORGET_SECONDS = 900.0  # a key with no failure for this long starts afresh
MAX_KEYS = 100_000  # memory bound: a flood of new names cannot grow it without end


@dataclass
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._records: dict[str, _Record] = {}

    @staticmethod
    def keys(username: str | None, address: str | None) -> list[str]:
        keys = [f"addr:{address or 'unknown'}"]
        if username:
            keys.insert(0, f"user:{username}")
        return keys

    def wait(self, keys: Sequence[str]) -> float:
        """Seconds until these keys may try again (0: now)."""
        now = self.clock()
        waits = [self._live(key, now).locked_until - now for key in keys]
        return max(0.0, *waits)

    def retry_after(self, keys: Sequence[str]) -> int:
        return max(1, math.ceil(self.wait(keys)))

    def failed(self, keys: Sequence[str]) -> None:
        now = self.clock()
        if len(self._records) >= MAX_KEYS:
            self._forget_stale(now)
        for key in keys:
            record = self._records.setdefault(key, self._live(key, now))
            record.failures += 1
            record.last_failure = now
            free = FREE_FAILURES[key.partition(":")[0]]
            if record.failures >= free:
                lock = LOCK_SECONDS * 2 ** (record.failures - free)
                record.locked_until = now + min(lock, MAX_LOCK_SECONDS)

    def succeeded(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._records.pop(key, None)

    def _live(self, key: str, now: float) -> _Record:
        record = self._records.get(key)
        if record is None:
            return _Record()
        if record.locked_until <= now and now - record.last_failure > FORGET_SECONDS:
            del self._records[key]
            return _Record()
        return record

    def _forget_stale(self, now: float) -> None:
        for key in list(self._records):
            self._live(key, now)
        if len(self._records) >= MAX_KEYS:
            # Still full of live lockouts: drop the oldest half rather than grow.
            by_age = sorted(self._records, key=lambda k: self._records[k].last_failure)
            for key in by_age[: len(by_age) // 2]:
                del self._records[key]
