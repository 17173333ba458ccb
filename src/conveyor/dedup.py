"""Deduplication modes for enqueue: `Unique`, `Debounce` and `Throttle`.

Each mode names a key. The newest job enqueued with that key decides what a new enqueue
does (see docs/scheduling.md, "Deduplication"): the enqueues of one key are serialised
by a transaction-scoped lock, so the decision and the write are one step for every
concurrent producer. This module validates the modes and turns a batch into one row per
key; the store runs the statement; `results` says what happened to every payload.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from conveyor.errors import EnqueueError
from conveyor.vocabulary import STATUSES

if TYPE_CHECKING:
    from conveyor.store.dedup import DedupRow

Outcome = Literal["enqueued", "duplicate", "debounced", "throttled"]
MAX_KEY_LENGTH = 500


@dataclass(frozen=True)
class Unique:
    """At most one job for `key` while the newest job with it blocks new ones: while its
    status is one of `states` (None: any status, as long as the row exists) and, with a
    `period`, until `period` seconds after it was enqueued. A refused enqueue returns the
    blocking job's id (outcome "duplicate")."""

    key: str
    period: float | timedelta | None = None
    states: Sequence[str] | None = None


@dataclass(frozen=True)
class Debounce:
    """Runs `delay` seconds after the last enqueue of `key`: while the newest job with the
    key is still queued and has never started, an enqueue replaces its payload and pushes
    its run time to now + `delay` (outcome "debounced"); otherwise a new job is written."""

    key: str
    delay: float | timedelta


@dataclass(frozen=True)
class Throttle:
    """At most one job for `key` per `window` seconds: an enqueue within `window` of the
    newest job with the key is dropped, and returns that job's id (outcome "throttled")."""

    key: str
    window: float | timedelta


Dedup = Unique | Debounce | Throttle


@dataclass(frozen=True)
class EnqueueResult:
    """What one enqueue did: `job_id` is the new job, or the existing job that absorbed it."""

    job_id: UUID
    outcome: Outcome

    @property
    def written(self) -> bool:
        """A new job was written (not a duplicate, a debounce or a throttled one)."""
        return self.outcome == "enqueued"


def _seconds(value: object, name: str, *, zero_allowed: bool) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise EnqueueError(f"{name} must be a number of seconds, not {value!r}")
    if seconds < 0 or (seconds == 0 and not zero_allowed) or seconds != seconds:
        bound = "non-negative" if zero_allowed else "positive"
        raise EnqueueError(f"{name} must be a {bound} number of seconds, not {value!r}")
    return float(seconds)


def _check_key(key: object, mode: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise EnqueueError(f"{mode}.key must be a string of 1-{MAX_KEY_LENGTH} characters")
    return key


def dedup_columns(mode: object) -> dict[str, Any]:
    """The columns `decide_unique_keys` reads for one mode; EnqueueError names the field."""
    if isinstance(mode, Unique):
        states = None
        if mode.states is not None:
            if isinstance(mode.states, str) or not mode.states:
                raise EnqueueError("Unique.states must be a non-empty sequence of statuses")
            unknown = [state for state in mode.states if state not in STATUSES]
            if unknown:
                raise EnqueueError(
                    f"Unique.states: unknown status {unknown[0]!r} (known: {', '.join(STATUSES)})"
                )
            states = sorted(set(mode.states))
        period = mode.period
        return {
            "unique_key": _check_key(mode.key, "Unique"),
            "unique_states": states,
            "debounce": False,
            "unique_seconds": None
            if period is None
            else _seconds(period, "Unique.period", zero_allowed=False),
        }
    if isinstance(mode, Debounce):
        return {
            "unique_key": _check_key(mode.key, "Debounce"),
            "unique_states": None,
            "delay_seconds": _seconds(mode.delay, "Debounce.delay", zero_allowed=True),
            "debounce": True,
        }
    if isinstance(mode, Throttle):
        return {
            "unique_key": _check_key(mode.key, "Throttle"),
            "unique_states": None,
            "debounce": False,
            "unique_seconds": _seconds(mode.window, "Throttle.window", zero_allowed=False),
        }
    raise EnqueueError(f"dedup must be Unique, Debounce or Throttle, not {type(mode).__name__}")


def check_modes(modes: Sequence[object], count: int) -> tuple[Dedup | None, ...]:
    """One mode (or None) per payload."""
    if isinstance(modes, Unique | Debounce | Throttle | str) or not isinstance(modes, Sequence):
        raise EnqueueError("dedup for enqueue_many must be a sequence, one mode (or None) per job")
    if len(modes) != count:
        raise EnqueueError(f"dedup has {len(modes)} entries for {count} jobs: give one per job")
    for mode in modes:
        if mode is not None:
            dedup_columns(mode)
    return tuple(mode for mode in modes)  # type: ignore[misc]  # checked just above


_REPEAT_OUTCOME: dict[type[Any], Outcome] = {
    Unique: "duplicate",
    Debounce: "debounced",
    Throttle: "throttled",
}


@dataclass
class DedupBatch:
    """A batch with its modes: one row per key goes to PostgreSQL (the first payload for
    Unique and Throttle, the last for Debounce); `results` maps every payload back."""

    ids: list[UUID]
    modes: tuple[Dedup | None, ...]
    records: list[dict[str, Any]]
    keys: list[str]
    stands_for: list[UUID]

    def results(self, rows: Sequence[DedupRow]) -> list[EnqueueResult]:
        by_request = {row.request_id: row for row in rows}
        results = []
        for job_id, mode, representative in zip(self.ids, self.modes, self.stands_for, strict=True):
            row = by_request[representative]
            outcome: Outcome
            if row.inserted_id is not None:
                target, outcome = row.inserted_id, "enqueued"
            elif row.debounced_id is not None:
                target, outcome = row.debounced_id, "debounced"
            elif row.held_id is not None:
                target, outcome = row.held_id, _REPEAT_OUTCOME[type(mode)]
            else:  # the statement writes, debounces or finds a holder for every row
                raise RuntimeError(f"enqueue_deduplicated said nothing of {representative}")
            if job_id != representative and mode is not None:
                outcome = _REPEAT_OUTCOME[type(mode)]  # merged into another payload here
            results.append(EnqueueResult(target, outcome))
        return results


def dedup_batch(
    ids: list[UUID], records: list[dict[str, Any]], modes: tuple[Dedup | None, ...]
) -> DedupBatch:
    """Merge payloads that share a key, and add each mode's columns to its row."""
    chosen: dict[str, int] = {}
    for index, mode in enumerate(modes):
        if mode is None:
            continue
        if mode.key not in chosen or isinstance(mode, Debounce):
            chosen[mode.key] = index  # Debounce keeps the last payload, the others the first
    sent: list[dict[str, Any]] = []
    for index, (record, mode) in enumerate(zip(records, modes, strict=True)):
        if mode is None:
            sent.append(record)
        elif chosen[mode.key] == index:
            sent.append({**record, **dedup_columns(mode)})
    stands_for = [
        job_id if mode is None else ids[chosen[mode.key]]
        for job_id, mode in zip(ids, modes, strict=True)
    ]
    return DedupBatch(ids, modes, sent, sorted(chosen), stands_for)


def check_options(options: Any, count: int) -> None:
    """The modes of an enqueue against its other options (`client.EnqueueOptions`)."""
    modes = check_modes(options.dedup, count)
    if options.idempotency_key is not None:
        raise EnqueueError("give idempotency_key or dedup, not both")
    debounced = any(isinstance(mode, Debounce) for mode in modes)
    if debounced and (options.run_at is not None or options.delay is not None):
        raise EnqueueError("Debounce sets the run time (now + Debounce.delay): drop run_at/delay")


def one_mode(dedup: Dedup | None) -> tuple[Dedup | None, ...] | None:
    """`enqueue`'s `dedup` as the per-payload tuple `client.build_batch` checks."""
    return None if dedup is None else (dedup,)


def many_modes(dedup: Sequence[Dedup | None] | None) -> tuple[Dedup | None, ...] | None:
    """Checked further by `client.build_batch` (one entry per payload)."""
    if dedup is not None and not isinstance(dedup, list | tuple):
        raise EnqueueError("dedup for enqueue_many must be a list, one mode (or None) per job")
    return None if dedup is None else tuple(dedup)
