"""What a handler may ask for instead of succeeding or failing: run later without using an
attempt (`Snooze`), fail this attempt with a chosen delay (`Retry`), or end the job now
(`Cancel`, `Discard`).

Each is an exception a handler raises, or a value it returns: `raise Snooze(30)` and
`return Snooze(30)` do the same. The worker turns it into one guarded `record_outcomes`
row, like any other end of an attempt (see docs/scheduling.md).
"""

from __future__ import annotations

from datetime import timedelta

# An infinite or absurd delay would fail the outcome's statement (PostgreSQL's interval
# overflows) and, with it, the batch it travels in: refuse it in the handler instead.
MAX_DELAY = 10 * 366 * 86400.0


def _seconds(value: float | timedelta, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 <= seconds <= MAX_DELAY
    ):
        raise ValueError(
            f"{what} must be a number of seconds from 0 to {MAX_DELAY:.0f} (ten years), "
            f"not {value!r}"
        )
    return float(seconds)


class HandlerOutcome(Exception):
    """Base of the outcomes a handler asks for."""


class Snooze(HandlerOutcome):
    """Run the job again in `seconds`, giving this attempt back: a snooze is not a failure
    (a 429 answered with Retry-After). The job's `snoozes` counter goes up instead; past
    the task's `max_snoozes`, a snooze uses an attempt like a `Retry`, so a handler that
    snoozes forever still ends dead after `max_attempts`."""

    def __init__(self, seconds: float | timedelta, reason: str = "") -> None:
        self.seconds = _seconds(seconds, "Snooze seconds")
        self.reason = reason
        super().__init__(reason or f"snoozed for {self.seconds:g} s")


class Retry(HandlerOutcome):
    """Fail this attempt and run again in `in_seconds` instead of the retry policy's
    backoff. It uses an attempt: on the last one the job is dead."""

    def __init__(self, in_seconds: float | timedelta, reason: str = "") -> None:
        self.in_seconds = _seconds(in_seconds, "Retry in_seconds")
        self.reason = reason
        super().__init__(reason or f"retry requested in {self.in_seconds:g} s")


class Cancel(HandlerOutcome):
    """End the job now as `cancelled`, as an operator's cancel would: nothing went wrong,
    the work is no longer wanted."""

    def __init__(self, reason: str = "") -> None:
        self.reason = reason
        super().__init__(reason or "cancelled by its handler")


class Discard(HandlerOutcome):
    """End the job now as `dead`, without its remaining retries: the work cannot succeed
    (a bad address, a deleted account). It lands in the dead-letter queue, where an
    operator can still see and replay it."""

    def __init__(self, reason: str = "") -> None:
        self.reason = reason
        super().__init__(reason or "discarded by its handler")
