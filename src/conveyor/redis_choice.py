"""The rule that picks a Redis, without any I/O, so it can be tested from a table of
observations: which candidate answered, when, and for how long."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

# While on a backup, redis.url is probed this often; during an outage, so are the others.
PROBE_INTERVAL = 1.0
# A probe answers quickly or counts as a miss: a slow PING is no reason to wait longer.
PROBE_TIMEOUT = 2.0
# A run of primary answers with a hole this long in it (nobody called, so nobody probed)
# is not "continuous": counting starts again.
MAX_PROBE_GAP = 5 * PROBE_INTERVAL


def redact(url: str) -> str:
    """The URL without its password, for logs, metrics and health pages."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{hostport}" if user else hostport))


class Choice:
    """The decision rule alone, with no I/O: fed observations and the time, it says which
    candidate is active. Index 0 is `redis.url`, the rest are the backups in order."""

    def __init__(
        self, candidates: int, failover_after: float, failback_after: float, active: int = 0
    ) -> None:
        self.candidates = candidates
        self.failover_after = failover_after
        self.failback_after = failback_after
        self.active = active
        self.outage_since: float | None = None
        self.last_probe: float | None = None
        self.primary_since: float | None = None
        self.last_primary_probe: float | None = None
        self._last_primary_answer: float | None = None

    def failure(self, now: float) -> None:
        """A call on the active candidate failed; an outage starts unless one runs."""
        if self.outage_since is None:
            self.outage_since = now

    def success(self) -> None:
        """A call on the active candidate worked: whatever failed before was passing."""
        self.outage_since = None

    def probe_due(self, now: float) -> bool:
        """The outage has lasted failover_after (and no probe ran in the last second)."""
        if self.candidates < 2 or self.outage_since is None:
            return False
        if now - self.outage_since < self.failover_after:
            return False
        return self.last_probe is None or now - self.last_probe >= PROBE_INTERVAL

    def probed(self, answered: Sequence[bool], now: float) -> int | None:
        """Every candidate was pinged: the first that answered becomes active. Returns the
        new index, or None when nothing changes (none answered, or the active one did)."""
        self.last_probe = now
        first = next((index for index, ok in enumerate(answered) if ok), None)
        if first is None:
            return None
        if first == self.active:
            self.outage_since = None
            return None
        self._switch(first)
        return first

    def primary_probe_due(self, now: float) -> bool:
        if self.active == 0:
            return False
        last = self.last_primary_probe
        return last is None or now - last >= PROBE_INTERVAL

    def primary_probed(self, answered: bool, now: float) -> bool:
        """redis.url was probed while on a backup; True when it is time to move back."""
        self.last_primary_probe = now
        if self.active == 0:
            return False
        if not answered:
            self.primary_since = self._last_primary_answer = None
            return False
        last = self._last_primary_answer
        if self.primary_since is None or last is None or now - last > MAX_PROBE_GAP:
            self.primary_since = now
        self._last_primary_answer = now
        if now - self.primary_since < self.failback_after:
            return False
        self._switch(0)
        return True

    @property
    def idle(self) -> bool:
        """On redis.url and no outage: nothing to watch."""
        return self.active == 0 and self.outage_since is None

    def seconds_to_wait(self, now: float) -> float:
        wait = PROBE_INTERVAL
        if self.outage_since is not None:
            wait = min(wait, self.outage_since + self.failover_after - now)
        return max(0.05, wait)

    def _switch(self, index: int) -> None:
        self.active = index
        self.outage_since = self.last_probe = None
        self.primary_since = self._last_primary_answer = self.last_primary_probe = None
