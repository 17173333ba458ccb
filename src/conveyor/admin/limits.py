"""Global rate and concurrency limits for the dashboard, the API and the CLI: list them
with their current use, set or remove one at runtime (audited).

A limit is not a tenant's: a tenant-scoped caller sees none and may change none; a
queue-scoped caller sees and changes the limits of its queues only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from conveyor.admin.base import AdminBase, check_actor
from conveyor.admin.errors import AdminError, AdminForbidden, AdminNotFound
from conveyor.admin.models import Model
from conveyor.limits import (
    Limit,
    LimitBook,
    check_concurrency,
    check_scope,
    parse_rate,
    scope,
)
from conveyor.vocabulary import LIMIT_FROM_ADMIN, SCOPE_KEY, SCOPE_QUEUE

# Keys shown beside the configured scopes (those with work waiting or in flight first):
# 1,000 keys must not make a page of 1,000 rows.
MAX_KEYS_SHOWN = 100


@dataclass(frozen=True, kw_only=True)
class LimitInfo(Model):
    scope: str  # queue:<name>, task:<name>, key:<key> or a key pattern
    rate: str | None  # "100/s"
    concurrency: int | None
    source: str  # code, config or admin; for a key under a pattern, the pattern's
    governed_by: str | None  # the pattern whose numbers a key uses
    updated: datetime | None
    in_flight: int  # jobs dispatched or running
    window_starts: int  # starts in the rate's current window
    waiting: int  # ready jobs held back in PostgreSQL


@dataclass(frozen=True, kw_only=True)
class LimitActionResult(Model):
    action: str  # set, remove
    scope: str
    changed: bool
    message: str


class LimitsMixin(AdminBase):
    async def limits(self) -> list[LimitInfo]:
        """Every limit the caller may see with its use now, then the busiest keys that a
        pattern governs (at most MAX_KEYS_SHOWN). A pattern's figures are the sums over
        the keys it governs that have work waiting or in flight."""
        if self.scope.tenants is not None:
            return []
        async with self.session() as store:
            rows = await store.flow_limits()
            book = LimitBook(row.limit() for row in rows)
            keys: list[str] = []
            if self.scope.queues is None and book.patterns:
                groups = await store.limited_groups(10 * MAX_KEYS_SHOWN)
                keys = sorted({g.limit_key for g in groups if g.limit_key})
                keys += await store.in_flight_limit_keys(MAX_KEYS_SHOWN)
            shown: list[tuple[Limit, Any]] = [(row.limit(), row) for row in rows]
            for key in dict.fromkeys(keys):
                limit = book.for_key(key)
                if limit is not None and scope(SCOPE_KEY, key) not in book.by_scope:
                    shown.append((limit, None))
            shown = [(limit, row) for limit, row in shown if self._may_see(limit.scope)]
            names = [limit.scope for limit, _ in shown]
            periods = [limit.rate.period if limit.rate else None for limit, _ in shown]
            usage = {u.scope: u for u in await store.limit_usage(names, periods)}
            waiting = {
                w.scope: w.waiting for w in await store.limit_waiting(names, book.limited_queues)
            }
        configured: list[LimitInfo] = []
        keyed: list[LimitInfo] = []
        for limit, row in shown:
            figures = usage.get(limit.scope)
            (configured if row is not None else keyed).append(
                LimitInfo(
                    scope=limit.scope,
                    rate=str(limit.rate) if limit.rate else None,
                    concurrency=limit.concurrency,
                    source=limit.source,
                    governed_by=None if row is not None else _pattern_of(book, limit.scope),
                    updated=row.updated if row is not None else None,
                    in_flight=figures.in_flight if figures else 0,
                    window_starts=figures.window_starts if figures and limit.rate else 0,
                    waiting=waiting.get(limit.scope, 0),
                )
            )
        sums: dict[str, tuple[int, int]] = {}
        for info in keyed:
            if info.governed_by is not None:
                in_flight, held = sums.get(info.governed_by, (0, 0))
                sums[info.governed_by] = (in_flight + info.in_flight, held + info.waiting)
        configured = [
            replace(info, in_flight=sums[info.scope][0], waiting=sums[info.scope][1])
            if info.scope in sums
            else info
            for info in configured
        ]
        keyed.sort(key=lambda info: (-info.waiting, -info.in_flight, info.scope))
        return configured + keyed[:MAX_KEYS_SHOWN]

    async def set_limit(
        self,
        limit_scope: str,
        actor: str,
        *,
        rate: str | None = None,
        concurrency: int | None = None,
    ) -> LimitActionResult:
        """Set (or replace) the limit of a scope now; code and configuration do not
        overwrite it until it is removed."""
        name, actor = self._check_scope(limit_scope), check_actor(actor)
        try:
            parsed = parse_rate(rate) if rate is not None else None
            slots = check_concurrency(concurrency) if concurrency is not None else None
            limit = Limit(name, parsed, slots, LIMIT_FROM_ADMIN)
        except ValueError as error:
            raise AdminError(str(error)) from None
        detail = {"rate": str(parsed) if parsed else None, "concurrency": slots}
        async with self.transaction() as tx:
            changed = bool(await tx.write_limits([limit], LIMIT_FROM_ADMIN))
            await tx.record_audit(
                actor, "set_limit", name, detail, "ok" if changed else "noop",
                tenants=None, queues=self._queues_of(name),
            )  # fmt: skip
        parts = [f"rate {parsed}" if parsed else "", f"concurrency {slots}" if slots else ""]
        figures = ", ".join(part for part in parts if part)
        state = "set to" if changed else "already was"
        return LimitActionResult(
            action="set", scope=name, changed=changed, message=f"limit {name} {state} {figures}"
        )

    async def remove_limit(self, limit_scope: str, actor: str) -> LimitActionResult:
        """Remove a scope's limit, whoever set it. A limit from code or configuration comes
        back at the next `conveyor worker` or queuer start unless it is removed there too."""
        name, actor = self._check_scope(limit_scope), check_actor(actor)
        async with self.transaction() as tx:
            removed = await tx.remove_limits([name])
            if not removed:
                raise AdminNotFound(f"no limit is set on {name}")
            await tx.record_audit(
                actor, "remove_limit", name, {}, "ok", tenants=None, queues=self._queues_of(name)
            )
        return LimitActionResult(
            action="remove", scope=name, changed=True, message=f"limit {name} removed"
        )

    def _check_scope(self, value: object) -> str:
        try:
            name = check_scope(value)
        except ValueError as error:
            raise AdminError(str(error)) from None
        self.refuse_tenant_scoped("changing a limit")
        if not self._may_see(name):
            raise AdminForbidden(f"{name}: a queue-scoped credential may change only its queues")
        return name

    def _may_see(self, name: str) -> bool:
        if self.scope.queues is None:
            return True
        kind, _, rest = name.partition(":")
        return kind == SCOPE_QUEUE and self.scope.allows_queue(rest)

    @staticmethod
    def _queues_of(name: str) -> list[str] | None:
        kind, _, rest = name.partition(":")
        return [rest] if kind == SCOPE_QUEUE else None


def _pattern_of(book: LimitBook, name: str) -> str | None:
    pattern = book.pattern_for(name.partition(":")[2])
    return pattern.scope if pattern is not None else None
