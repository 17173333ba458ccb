"""The queuer's second dispatch path: jobs under a global rate or concurrency limit.

`dispatch_ready` moves plain work; this moves the rest (queues with a queue limit, jobs
with a limit key or of a limited task), in one transaction per pass:

1. a transaction-level advisory lock, so two queuers never spend the same budget;
2. one snapshot of the figures of every scope involved (in flight, dispatched and not
   started, starts in the rate window);
3. per (queue, key, task) group, its most urgent ready jobs up to the group's budget,
   locked with SKIP LOCKED: a key at its limit takes no candidates and blocks no other;
4. the most urgent candidates that fit every budget are marked dispatched, each with the
   rate scopes its claim will record a start for.

Work that does not fit stays queued in PostgreSQL. `next_wake` says when the first rate
window frees a start, so the queuer sleeps until then rather than polling.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from conveyor.config import Settings
from conveyor.limits import (
    MAX_COUNT,
    Limit,
    LimitBook,
    Usage,
    budget,
    parse_rate,
    pick,
    scope,
)
from conveyor.store import Store
from conveyor.store.dispatch import DispatchedJob
from conveyor.store.limits import Group
from conveyor.vocabulary import LIMIT_FROM_CONFIG, SCOPE_KEY, SCOPE_QUEUE, SCOPE_TASK

log = logging.getLogger("conveyor.limits")
# Groups (queue, key, task) looked at per pass; more wait for a later pass.
MAX_GROUPS = 10_000
PRUNE_EVERY = 60.0


def configured_limits(settings: Settings) -> list[Limit]:
    """The limits of the configuration file, as flow_limits rows."""
    limits = []
    for name, queue in settings.queues.items():
        if queue.rate_limit is not None or queue.concurrency_limit is not None:
            rate = parse_rate(queue.rate_limit) if queue.rate_limit is not None else None
            limits.append(Limit(scope(SCOPE_QUEUE, name), rate, queue.concurrency_limit))
    keys = dict(settings.limits.keys)
    if settings.limits.default_key is not None:
        keys["*"] = settings.limits.default_key
    for key, entry in keys.items():
        rate = parse_rate(entry.rate) if entry.rate is not None else None
        limits.append(Limit(scope(SCOPE_KEY, key), rate, entry.concurrency))
    return limits


class LimitedDispatch:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._configured = configured_limits(settings)
        self._synced = False
        self._pruned_at = 0.0
        # Seconds until a rate window frees a start for waiting work; None: nothing waits
        # on a window (the queuer's own poll covers concurrency slots freed by workers).
        self.next_wake: float | None = None

    async def sync_config(self) -> None:
        """Write the configuration's limits and drop config rows it no longer names."""
        changed = await self.store.write_limits(self._configured, LIMIT_FROM_CONFIG, prune="")
        if changed:
            log.info("limits from the configuration written: %s", ", ".join(sorted(changed)))
        self._synced = True

    async def dispatch(self) -> list[DispatchedJob]:
        self.next_wake = None
        if not self._synced:
            await self.sync_config()
        book = LimitBook(row.limit() for row in await self.store.flow_limits())
        groups = await self.store.limited_groups(MAX_GROUPS)
        await self._prune(book)
        if not groups and not book.limited_queues:
            return []
        async with self.store.transaction() as tx:
            await tx.lock_limited_dispatch()
            return await self._dispatch_locked(tx, book, groups)

    async def _dispatch_locked(
        self, tx: Store, book: LimitBook, groups: list[Group]
    ) -> list[DispatchedJob]:
        queuer = self.settings.queuer
        queues = sorted({group.queue_name for group in groups} | set(book.limited_queues))
        scopes = _scopes(groups, queues)
        periods = []
        for name in scopes:
            limit = _limit_of(book, name)
            periods.append(limit.rate.period if limit is not None and limit.rate else None)
        usage = {row.scope: row for row in await tx.limit_usage(scopes, periods)}
        budgets: dict[str, int] = {}
        for name in scopes:
            limit = _limit_of(book, name)
            budgets[name] = MAX_COUNT if limit is None else budget(limit, usage.get(name))
        room = {
            queue: max(queuer.buffer_per_queue - _dispatched(usage, queue), 0) for queue in queues
        }
        wanted = []
        for group in groups:
            key = group.limit_key or None
            names = [scope(SCOPE_QUEUE, group.queue_name), scope(SCOPE_TASK, group.task)]
            names += [scope(SCOPE_KEY, key)] if key else []
            take = min(queuer.batch_size, room[group.queue_name], *(budgets[n] for n in names))
            if take > 0:
                wanted.append((group, take))
        plain = []
        for queue in book.limited_queues:
            take = min(queuer.batch_size, room[queue], budgets[scope(SCOPE_QUEUE, queue)])
            if take > 0:
                plain.append((queue, take))
        picks = []
        if wanted or plain:
            candidates = await tx.limited_candidates(wanted, plain)
            picks = pick(candidates, book, budgets, room, queuer.batch_size)
        self.next_wake = _next_wake(book, scopes, budgets, usage, len(picks))
        return await tx.dispatch_limited(picks) if picks else []

    async def _prune(self, book: LimitBook) -> None:
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY:
            return
        longest = max((limit.rate.period for limit in book.all if limit.rate), default=0.0)
        await self.store.prune_flow_starts(longest)
        self._pruned_at = now


def _scopes(groups: Iterable[Group], queues: Iterable[str]) -> list[str]:
    names = {scope(SCOPE_QUEUE, queue) for queue in queues}
    for group in groups:
        names.add(scope(SCOPE_TASK, group.task))
        if group.limit_key:
            names.add(scope(SCOPE_KEY, group.limit_key))
    return sorted(names)


def _limit_of(book: LimitBook, name: str) -> Limit | None:
    kind, _, rest = name.partition(":")
    if kind == SCOPE_KEY:
        return book.for_key(rest)
    return book.by_scope.get(name)


def _dispatched(usage: dict[str, Usage], queue: str) -> int:
    row = usage.get(scope(SCOPE_QUEUE, queue))
    return row.dispatched if row else 0


def _next_wake(
    book: LimitBook,
    scopes: list[str],
    budgets: dict[str, int],
    usage: dict[str, Usage],
    picked: int,
) -> float | None:
    """When the earliest exhausted rate window lets one more start in."""
    if picked:
        return None  # a pass that moved jobs is followed by another one soon anyway
    waits = []
    for name in scopes:
        limit = _limit_of(book, name)
        row = usage.get(name)
        if limit is None or limit.rate is None or budgets[name] > 0 or row is None:
            continue
        if row.frees_in is not None:
            waits.append(max(row.frees_in, 0.0))
    return min(waits) if waits else None
