"""The deduplicating enqueue: lock the batch's keys, then one statement decides and writes.

The lock is transaction-scoped, so two producers enqueueing the same key (each in its own
transaction, or inside a caller's) run one after the other, and the second statement's
snapshot, taken after the first committed, sees the first one's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from conveyor.errors import EnqueueError
from conveyor.store.plans import Plan


@dataclass(frozen=True)
class DedupRow:
    """What `enqueue_deduplicated` did with one row: wrote it, debounced an existing job
    with it, or found the job that holds its key."""

    request_id: UUID
    inserted_id: UUID | None
    debounced_id: UUID | None
    held_id: UUID | None


def enqueue_deduplicated(schema: str, jobs: str, keys: Sequence[str]) -> Plan[list[DedupRow]]:
    """One `DedupRow` per row of `jobs`; `keys` are the distinct keys to lock."""
    if keys:
        locked = yield "lock_unique_keys", {"schema_name": schema, "keys": sorted(keys)}
        isolation = (locked.first() or {}).get("isolation")
        if isolation != "read committed":
            raise EnqueueError(
                f"dedup needs a READ COMMITTED transaction, not {isolation!r}: a later snapshot"
                " is what sees the job another producer committed with the same key"
            )
    rows = yield "enqueue_deduplicated", {"jobs": jobs}
    return [DedupRow(**columns) for columns in rows.dicts()]
