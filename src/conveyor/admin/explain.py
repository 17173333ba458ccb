"""`why_waiting`: a plain sentence saying why a job has not started yet.

Pure functions over facts gathered by one query (and, for a dispatched job, its place in
the Redis lanes), so every case is easy to test on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from conveyor.durations import format_duration
from conveyor.jobs import DISPATCHED, QUEUED
from conveyor.vocabulary import ON_FAILURE_RUN, WAITING


@dataclass(frozen=True, kw_only=True)
class WaitFacts:
    status: str
    queue: str
    attempt: int
    max_attempts: int
    run_at: datetime
    now: datetime  # PostgreSQL's clock
    dispatched_at: datetime | None
    last_error: str | None
    queue_paused: bool
    paused_at: datetime | None
    ready_ahead: int | None  # ready jobs that leave before it (counted up to ahead_cap)
    dispatched_ahead: int  # jobs already in Redis that pop before it
    ahead_cap: int
    live_workers: int
    redis_ahead: int | None = None  # ids ahead of it in the lanes; None: not looked up
    in_redis: bool | None = None  # None: Redis not asked (or unreachable)
    # A tenant-scoped reader: the counts ahead are of its tenants' jobs only (the rest of
    # the queue is not its business), so the sentence must say so.
    own_only: bool = False
    # A job with depends_on: its parents not ended yet, and its rule (docs/workflows.md).
    pending_parents: int | None = None
    on_parent_failure: str | None = None


def _when(moment: datetime, now: datetime) -> str:
    seconds = max(0.0, (moment - now).total_seconds())
    return f"{moment.isoformat(timespec='seconds')} (in {format_duration(round(seconds))})"


def _since(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return ""
    seconds = max(0.0, (now - moment).total_seconds())
    return f" since {moment.isoformat(timespec='seconds')} ({format_duration(round(seconds))} ago)"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def why_waiting(facts: WaitFacts) -> str | None:
    """None for a job that is running or finished; otherwise one to three sentences."""
    if facts.status == WAITING:
        return _waiting_on_parents(facts)
    if facts.status not in (QUEUED, DISPATCHED):
        return None
    sentences: list[str] = []
    queue = repr(facts.queue)
    if facts.queue_paused:
        sentences.append(
            f"Queue {queue} is paused{_since(facts.paused_at, facts.now)}: nothing in it "
            "starts until it is resumed."
        )
    if facts.status == QUEUED and facts.run_at > facts.now:
        if facts.attempt > 0:
            error = f" ({facts.last_error})" if facts.last_error else ""
            sentences.append(
                f"Retry backoff: attempt {facts.attempt} of {facts.max_attempts} failed{error}; "
                f"the next attempt is due at {_when(facts.run_at, facts.now)}."
            )
        else:
            sentences.append(f"Scheduled for later: due at {_when(facts.run_at, facts.now)}.")
        return " ".join(sentences)
    if facts.queue_paused:
        return " ".join(sentences)
    if facts.live_workers == 0:
        sentences.append(
            f"No live worker serves queue {queue}: start one with "
            f"`conveyor worker --queues {facts.queue}`."
        )
    if facts.status == DISPATCHED:
        sentences.append(_dispatched(facts))
    else:
        sentences.append(_ready(facts))
    return " ".join(sentences)


def _dispatched(facts: WaitFacts) -> str:
    when = _since(facts.dispatched_at, facts.now)
    if facts.in_redis is False:
        return (
            f"Dispatched{when} but not found in Redis: the reconciler will queue it again "
            "shortly (Redis lost it, or a worker is claiming it right now)."
        )
    text = f"Dispatched to Redis{when} and waiting for a free worker"
    if facts.redis_ahead is not None:
        text += f"; {_plural(facts.redis_ahead, 'job')} ahead of it in the lanes"
    return text + "."


def _ready(facts: WaitFacts) -> str:
    ready = facts.ready_ahead or 0
    ahead = ready + facts.dispatched_ahead
    if ahead == 0:
        return (
            f"Next in line in queue {facts.queue!r}: the queuer hands it to Redis on its next pass."
        )
    count = f"at least {ahead}" if ready >= facts.ahead_cap else str(ahead)
    noun = "job" if ahead == 1 else "jobs"
    text = f"Waiting behind {count} {noun} of higher or equal priority in queue {facts.queue!r}"
    return text + (" (only your tenants' jobs are counted)." if facts.own_only else ".")


def _waiting_on_parents(facts: WaitFacts) -> str:
    pending = facts.pending_parents or 0
    if facts.on_parent_failure == ON_FAILURE_RUN:
        rule = "it runs however they end"
    else:
        rule = "if one of them does not complete, it is cancelled"
    return (
        f"Waiting for {_plural(pending, 'parent')} (depends_on) to end: the statement that "
        f"ends the last one queues it; {rule}."
    )
