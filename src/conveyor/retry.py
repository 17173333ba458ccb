"""When a failed attempt runs again. The wait is stored in PostgreSQL (`run_at`), never slept."""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass, field

# backoff(attempt) or backoff(attempt, exception): the second form sees what failed (a
# 429's Retry-After, a provider's hint) and may choose the wait from it.
BackoffFunction = Callable[[int], float] | Callable[[int, BaseException], float]


def _wants_exception(backoff: BackoffFunction) -> bool:
    try:
        parameters = inspect.signature(backoff).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: the old form
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in positional)


# A backoff read from a server's answer (Retry-After) may be anything: an infinite or
# absurd wait would overflow PostgreSQL's interval and fail the outcome's statement.
MAX_BACKOFF = 10 * 366 * 86400.0


def _bounded(seconds: float) -> float:
    if seconds != seconds:  # NaN: no usable wait, retry at once
        return 0.0
    return min(MAX_BACKOFF, max(0.0, seconds))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff 2^attempt x base, capped, with optional jitter.

    `retry_on` limits which exceptions retry (others go straight to the dead-letter queue);
    `backoff` replaces the formula with a function of the attempt number, or of the
    attempt number and the exception that failed it.
    """

    base: float = 1.0
    cap: float = 300.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    backoff: BackoffFunction | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("retry base and cap must not be negative")

    def delay(self, attempt: int, error: BaseException | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based), which `error`
        ended."""
        if self.backoff is not None:
            if _wants_exception(self.backoff):
                with_error: Callable[[int, BaseException | None], float] = self.backoff  # type: ignore[assignment]
                return _bounded(float(with_error(attempt, error)))
            plain: Callable[[int], float] = self.backoff  # type: ignore[assignment]
            return _bounded(float(plain(attempt)))
        delay = min(self.cap, self.base * float(2 ** min(attempt, 62)))
        if self.jitter:
            # "Equal jitter": keeps at least half the delay so retries stay spread out
            # but never collapse to zero under a thundering herd.
            delay = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - not security
        return delay

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The smallest and largest delay `delay(attempt)` can return (for tests and docs)."""
        full = min(self.cap, self.base * float(2 ** min(attempt, 62)))
        return (full / 2, full) if self.jitter else (full, full)

    def should_retry(self, error: BaseException) -> bool:
        return isinstance(error, self.retry_on)
