"""The deduplicating enqueue: lock the batch's keys, decide, then write the rest.

The lock is transaction-scoped, so two producers enqueueing the same key (each in its own
transaction, or inside a caller's) run one after the other, and the decision's snapshot,
taken after the previous producer committed, sees that producer's job. The rows that are
written go through `insert_jobs`, the statement of every enqueue, so a job enqueued with a
key has every column one enqueued without has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from conveyor.errors import EnqueueError
from conveyor.store.plans import Plan


@dataclass(frozen=True)
class DedupRow:
    """What became of one row: written, debounced into an existing job, or absorbed by the
    job that holds its key."""

    request_id: UUID
    inserted_id: UUID | None
    debounced_id: UUID | None
    held_id: UUID | None


@dataclass(frozen=True)
class Decision:
    """One row of `decide_unique_keys`: a key held by an existing job."""

    request_id: UUID
    held_id: UUID
    debounced_id: UUID | None
    write_anyway: bool  # a debounce that found the job already dispatched or started


# Given a record's id and another job's id, the record's payload sealed to that job.
Reseal = Callable[[UUID, UUID], Any]


def enqueue_deduplicated(
    schema: str,
    records: Sequence[dict[str, Any]],
    keys: Sequence[str],
    reseal: Reseal | None = None,
) -> Plan[list[DedupRow]]:
    """One `DedupRow` per record (the rows `insert_jobs` reads, with `unique_*` columns);
    `keys` are the distinct keys to lock. `reseal` is given when payloads are encrypted."""
    decisions: dict[UUID, Decision] = {}
    if keys:
        locked = yield "lock_unique_keys", {"schema_name": schema, "keys": sorted(keys)}
        isolation = (locked.first() or {}).get("isolation")
        if isolation != "read committed":
            raise EnqueueError(
                f"dedup needs a READ COMMITTED transaction, not {isolation!r}: a later snapshot"
                " is what sees the job another producer committed with the same key"
            )
        proposed = list(records)
        if reseal is not None:
            proposed = yield from _sealed_for_targets(proposed, reseal)
        rows = yield "decide_unique_keys", {"jobs": orjson.dumps(proposed).decode()}
        decisions = {row.request_id: row for row in map(_decision, rows.dicts())}
    absorbed = {key for key, decision in decisions.items() if not decision.write_anyway}
    fresh = [record for record in records if record["id"] not in absorbed]
    if fresh:
        written = yield "insert_jobs", {"jobs": orjson.dumps(fresh).decode()}
        if len(written) != len(fresh):  # no idempotency_key on this path: nothing conflicts
            raise RuntimeError(f"insert_jobs wrote {len(written)} of {len(fresh)} jobs")
    results = []
    for record in records:
        decision = decisions.get(record["id"])
        results.append(
            DedupRow(
                request_id=record["id"],
                inserted_id=None if record["id"] in absorbed else record["id"],
                debounced_id=decision.debounced_id if decision else None,
                held_id=decision.held_id if decision else None,
            )
        )
    return results


def _sealed_for_targets(
    records: list[dict[str, Any]], reseal: Reseal
) -> Plan[list[dict[str, Any]]]:
    """Debounced records with their payload sealed to the job they would replace; a record
    that is written after all keeps its own (`records` is not changed)."""
    debounced = [record for record in records if record.get("debounce")]
    if not debounced:
        return records
    rows = yield (
        "debounce_targets",
        {
            "request_ids": [record["id"] for record in debounced],
            "keys": [record["unique_key"] for record in debounced],
        },
    )
    targets: dict[UUID, UUID] = {row["request_id"]: row["job_id"] for row in rows.dicts()}
    return [
        {**record, "payload": reseal(record["id"], targets[record["id"]]), "sealed_for": target}
        if (target := targets.get(record["id"])) is not None
        else record
        for record in records
    ]


def _decision(columns: dict[str, Any]) -> Decision:
    return Decision(**columns)
