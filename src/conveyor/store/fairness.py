"""The queuer's statement for fairness between tenants (see conveyor.fairness)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from conveyor.store.base import StoreBase


@dataclass(frozen=True)
class FairJob:
    id: UUID
    queue_name: str
    priority: int
    turn: int  # the round-robin round: push round 1 of every tenant before round 2


class FairnessStatements(StoreBase):
    async def dispatch_fair(self, queues: Sequence[str], buffer: int, batch: int) -> list[FairJob]:
        """Dispatch ready jobs of `queues` round-robin across their tenants, leaving no
        queue more than `buffer` jobs in Redis; in push order (round by round)."""
        params = {"queues": list(queues), "buffer": buffer, "batch": batch}
        return await self._rows("dispatch_fair", params, FairJob)
