"""The queuer's statements: move ready jobs into the dispatched state, and back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from conveyor.store.base import StoreBase


@dataclass(frozen=True)
class DispatchedJob:
    id: UUID
    queue_name: str
    priority: int
    # Seconds since the job became ready: the low lane's aging rule reads it.
    waited: float = 0.0


class DispatchStatements(StoreBase):
    async def dispatch_ready(
        self, buffer: int, batch: int, skip: Sequence[str] = ()
    ) -> list[DispatchedJob]:
        """Mark up to `batch` ready jobs per active queue but `skip` dispatched, leaving no
        queue more than `buffer` jobs in Redis."""
        params = {"buffer": buffer, "batch": batch, "skip": list(skip)}
        return await self._rows("dispatch_ready", params, DispatchedJob)

    async def aged_in_low_lane(
        self, agings: dict[str, float], default: float | None, limit: int
    ) -> list[DispatchedJob]:
        """Dispatched low-lane jobs older than their queue's aging seconds (`agings`, else
        `default`), at most `limit`, queue by queue, oldest first."""
        params = {
            "queues": list(agings),
            "agings": list(agings.values()),
            "default": default,
            "limit": limit,
        }
        rows = await self._dicts("aged_in_low_lane", params)
        return [DispatchedJob(row["id"], row["queue_name"], 0) for row in rows]

    async def undispatch(self, ids: Sequence[UUID]) -> list[UUID]:
        """Put dispatched jobs back to queued; return the ones that were still dispatched."""
        rows = await self._dicts("undispatch", {"ids": list(ids)})
        return [row["id"] for row in rows]

    async def database_now(self) -> datetime:
        rows = await self._dicts("db_now", {})
        now: datetime = rows[0]["now"]
        return now

    async def undispatch_all_before(self, before: datetime) -> int:
        """Every job dispatched at or before `before` (a time read from PostgreSQL) goes
        back to queued; return how many."""
        return await self._execute("undispatch_all_before", {"before": before})

    async def paused_queues(self) -> set[str]:
        return {row["name"] for row in await self._dicts("paused_queues", {})}

    async def has_backlog(self) -> bool:
        """True when an active queue has ready jobs the buffer had no room for."""
        rows = await self._dicts("has_backlog", {})
        return bool(rows and rows[0]["backlog"])

    async def jit_enabled(self) -> bool:
        rows = await self._dicts("jit_enabled", {})
        return bool(rows and rows[0]["enabled"])

    async def take_leader_lease(self, name: str, holder: str, lease: float) -> bool:
        """Take or renew the lease `name` for `lease` seconds; True when `holder` has it."""
        params = {"name": name, "holder": holder, "lease": lease}
        return await self._row("take_leader_lease", params, _Holder) is not None

    async def release_leader_lease(self, name: str, holder: str) -> None:
        await self._execute("release_leader_lease", {"name": name, "holder": holder})


@dataclass(frozen=True)
class _Holder:
    holder: str
