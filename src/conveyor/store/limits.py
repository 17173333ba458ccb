"""The statements of global limits: their definitions (written by code, configuration or
an operator), the queuer's limited dispatch and the figures admin shows."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from conveyor.limits import Candidate, Limit, Pick, Rate, Usage
from conveyor.store.dispatch import DispatchedJob
from conveyor.store.plans import AsyncPlans, Plan, SyncStatements
from conveyor.vocabulary import SCOPE_TASK

# How long a new task limit may wait for enqueues in flight (see lock_flow_limits_table).
LOCK_TIMEOUT = "5s"


@dataclass(frozen=True)
class LimitRow:
    scope: str
    rate_count: int | None
    rate_period_seconds: float | None
    concurrency: int | None
    source: str
    updated: datetime

    def limit(self) -> Limit:
        rate = None
        if self.rate_count is not None and self.rate_period_seconds is not None:
            rate = Rate(self.rate_count, self.rate_period_seconds)
        return Limit(self.scope, rate, self.concurrency, self.source)


@dataclass(frozen=True)
class Group:
    queue_name: str
    limit_key: str  # '' for jobs without a key
    task: str


@dataclass(frozen=True)
class Waiting:
    scope: str
    waiting: int


def _records(limits: Sequence[Limit]) -> str:
    return orjson.dumps(
        [
            {
                "scope": limit.scope,
                "rate_count": limit.rate.count if limit.rate else None,
                "rate_period_seconds": limit.rate.period if limit.rate else None,
                "concurrency": limit.concurrency,
            }
            for limit in limits
        ]
    ).decode()


def write_limits(
    limits: Sequence[Limit],
    source: str,
    prune: str | None = None,
    drop: Sequence[str] = (),
) -> Plan[list[str]]:
    """Upsert `limits` as `source`; with `prune` (a scope prefix, "" for all), delete the
    rows of `source` under that prefix that are not in `limits`; delete the rows of
    `source` named in `drop`. Return the scopes written or deleted. A task limit that did
    not exist before reaches the task's jobs already stored (mark_task_limited) once no
    enqueue that missed it is still open."""
    changed: list[str] = []
    if limits:
        rows = yield "upsert_flow_limits", {"limits": _records(limits), "source": source}
        written = rows.dicts()
        changed += [row["scope"] for row in written]
        tasks = [
            row["scope"].partition(":")[2]
            for row in written
            if row["created"] and row["scope"].startswith(f"{SCOPE_TASK}:")
        ]
        if tasks:
            yield "set_local_lock_timeout", {"lock_timeout": LOCK_TIMEOUT}
            yield "lock_flow_limits_table", {}
            yield "mark_task_limited", {"tasks": tasks}
    if prune is not None:
        params = {
            "keep": [limit.scope for limit in limits],
            "scopes": None,
            "source": source,
            "prefix": prune.replace("%", r"\%").replace("_", r"\_") + "%",
        }
        deleted = yield "delete_flow_limits", params
        changed += deleted.column("scope")
    if drop:
        params = {"keep": None, "scopes": list(drop), "source": source, "prefix": ""}
        deleted = yield "delete_flow_limits", params
        changed += deleted.column("scope")
    return changed


def remove_limits(scopes: Sequence[str]) -> Plan[list[str]]:
    params = {"keep": None, "scopes": list(scopes), "source": None, "prefix": ""}
    deleted = yield "delete_flow_limits", params
    return list(deleted.column("scope"))


class LimitStatements(AsyncPlans):
    async def write_limits(
        self,
        limits: Sequence[Limit],
        source: str,
        prune: str | None = None,
        drop: Sequence[str] = (),
    ) -> list[str]:
        return await self._run_plan(write_limits(limits, source, prune, drop), atomic=True)

    async def remove_limits(self, scopes: Sequence[str]) -> list[str]:
        return await self._run_plan(remove_limits(scopes), atomic=True)

    async def flow_limits(self) -> list[LimitRow]:
        return await self._rows("list_flow_limits", {}, LimitRow)

    # -- the limited dispatch: call these on one transaction (store.transaction()) ----------

    async def lock_limited_dispatch(self) -> None:
        lock = zlib.crc32(f"conveyor-limits:{self.schema}".encode())
        await self._dicts("lock_limited_dispatch", {"lock": lock})

    async def limited_groups(self, max_groups: int) -> list[Group]:
        return await self._rows("limited_groups", {"max_groups": max_groups}, Group)

    async def limit_usage(
        self, scopes: Sequence[str], periods: Sequence[float | None]
    ) -> list[Usage]:
        params = {"scopes": list(scopes), "periods": list(periods)}
        return await self._rows("limit_usage", params, Usage)

    async def limited_candidates(
        self, groups: Sequence[tuple[Group, int]], plain: Sequence[tuple[str, int]]
    ) -> list[Candidate]:
        params = {
            "queues": [group.queue_name for group, _ in groups],
            "keys": [group.limit_key for group, _ in groups],
            "tasks": [group.task for group, _ in groups],
            "limits": [limit for _, limit in groups],
            "plain_queues": [queue for queue, _ in plain],
            "plain_limits": [limit for _, limit in plain],
        }
        return await self._rows("limited_candidates", params, Candidate)

    async def dispatch_limited(self, picks: Sequence[Pick]) -> list[DispatchedJob]:
        records = [
            {"id": str(pick.candidate.id), "scopes": list(pick.rate_scopes)} for pick in picks
        ]
        params = {"picks": orjson.dumps(records).decode()}
        return await self._rows("dispatch_limited", params, DispatchedJob)

    async def prune_flow_starts(self, keep_seconds: float) -> int:
        return await self._execute("prune_flow_starts", {"keep": keep_seconds})

    async def limit_waiting(self, scopes: Sequence[str], queues: Sequence[str]) -> list[Waiting]:
        params = {"scopes": list(scopes), "queues": list(queues)}
        return await self._rows("limit_waiting", params, Waiting)

    async def in_flight_limit_keys(self, max_keys: int) -> list[str]:
        rows = await self._dicts("in_flight_limit_keys", {"max_keys": max_keys})
        return [row["limit_key"] for row in rows]


class SyncLimits(SyncStatements):
    """`write_limits` for `conveyor worker` at start (`Conveyor.sync_limits`)."""

    def write_limits(
        self,
        limits: Sequence[Limit],
        source: str,
        prune: str | None = None,
        drop: Sequence[str] = (),
    ) -> list[str]:
        return self._run_plan(write_limits(limits, source, prune, drop), atomic=True)


__all__ = ["Group", "LimitRow", "LimitStatements", "SyncLimits", "Waiting"]
