"""Capacity statements: the scaling signal's figures and the autoscaler's past decisions
(scaling.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from conveyor.scope import Scope
from conveyor.store.base import StoreBase


@dataclass(frozen=True)
class ScalingRow:
    queue_name: str
    waiting: int
    enqueued: int  # in the window
    finished: int  # attempts completed, failed or dead in the window
    run_seconds: float  # their handler seconds


@dataclass(frozen=True)
class DecisionRow:
    id: int
    at: datetime
    target: str | None  # "from->to" processes
    direction: str
    reason: str | None
    detail: str | None


class ScalingStatements(StoreBase):
    async def scaling_figures(self, minutes: int, scope: Scope) -> list[ScalingRow]:
        """Per queue: waiting now, and the last `minutes` complete minutes of history."""
        params = {"minutes": minutes, **scope.params}
        return await self._rows("admin_scaling", params, ScalingRow, prepare=False)

    async def autoscale_decisions(self, actor: str, action: str, limit: int) -> list[DecisionRow]:
        """The newest autoscaling decisions recorded in the audit log."""
        params = {"actor": actor, "action": action, "limit": limit}
        return await self._rows("admin_autoscale_decisions", params, DecisionRow, prepare=False)
