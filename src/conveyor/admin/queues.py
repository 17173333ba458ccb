"""Queue-wide actions: pause, resume, purge the dead-letter queue, preview a prune."""

from __future__ import annotations

import logging

from conveyor.admin.base import (
    SAMPLE,
    AdminBase,
    check_actor,
    check_optional_queue,
    check_queue,
    check_seconds,
)
from conveyor.admin.models import BulkResult, PurgeResult, QueueActionResult
from conveyor.config import format_duration
from conveyor.errors import RedisUnavailable

log = logging.getLogger("conveyor.admin")


class QueueActionsMixin(AdminBase):
    async def pause(self, queue: str, actor: str) -> QueueActionResult:
        """Stop a queue. PostgreSQL first (the queuer stops dispatching, dispatched jobs go
        back to queued, and claims of this queue are refused from now on), then Redis
        (workers skip the queue; its lanes are emptied)."""
        queue = check_queue(queue)
        actor = check_actor(actor)
        self.refuse_tenant_scoped("pausing a queue")
        async with self.transaction() as tx:
            await self.require_queue(tx, queue)
            row = await tx.lock_queue(queue)
            was_paused = row is not None and not row.is_active
            requeued = await tx.pause_queue(queue)
            await tx.record_audit(
                actor,
                "pause",
                f"queue:{queue}",
                {"requeued": requeued},
                "noop" if was_paused else "ok",
                tenants=None,  # the whole queue: no one tenant's business
                queues=[queue],
            )
        synced, warning = await self._sync_redis(queue, pause=True)
        state = "was already paused" if was_paused else "paused"
        message = f"queue {queue!r} {state}; {requeued} dispatched job(s) taken back from Redis"
        return QueueActionResult(
            action="pause",
            queue=queue,
            changed=not was_paused,
            requeued=requeued,
            redis_synced=synced,
            message=message + warning,
        )

    async def resume(self, queue: str, actor: str) -> QueueActionResult:
        """Let a paused queue run again, and wake the queuer at once."""
        queue = check_queue(queue)
        actor = check_actor(actor)
        self.refuse_tenant_scoped("resuming a queue")
        async with self.transaction() as tx:
            await self.require_queue(tx, queue)
            row = await tx.lock_queue(queue)
            was_paused = row is not None and not row.is_active
            await tx.resume_queue(queue, self.channel)
            await tx.record_audit(
                actor, "resume", f"queue:{queue}", {}, "ok" if was_paused else "noop",
                tenants=None, queues=[queue],
            )  # fmt: skip
        synced, warning = await self._sync_redis(queue, pause=False)
        state = "resumed" if was_paused else "was not paused"
        return QueueActionResult(
            action="resume",
            queue=queue,
            changed=was_paused,
            requeued=0,
            redis_synced=synced,
            message=f"queue {queue!r} {state}{warning}",
        )

    async def _sync_redis(self, queue: str, *, pause: bool) -> tuple[bool, str]:
        """Mirror the pause in Redis. PostgreSQL already governs (claims of a paused queue
        are refused), so a Redis outage here is reported, not raised."""
        try:
            if pause:
                await self.lanes.pause(queue)
            else:
                await self.lanes.resume(queue)
        except RedisUnavailable as error:
            log.warning("queue %s: Redis not updated (%s)", queue, error)
            if pause:
                return False, (
                    f" (Redis could not be updated: {error}; the pause holds anyway, since "
                    "PostgreSQL refuses claims of a paused queue)"
                )
            return False, (
                f" (Redis could not be updated: {error}; workers keep skipping the queue "
                "until you run resume again once Redis is reachable)"
            )
        return True, ""

    async def purge_dead(
        self, actor: str, queue: str | None = None, dry_run: bool = True
    ) -> PurgeResult:
        """Delete dead jobs (of one queue, or all). A dry run (the default) only counts."""
        return await self._purge(actor, queue, dry_run, "purge_dead")

    async def clear_failed(self, queue: str, actor: str) -> PurgeResult:
        """The dashboard's "clear failed": delete the dead jobs of one queue."""
        return await self._purge(actor, check_queue(queue), False, "clear_failed")

    async def _purge(self, actor: str, queue: str | None, dry_run: bool, action: str) -> BulkResult:
        actor = check_actor(actor)
        queue = check_optional_queue(queue)
        async with self.transaction() as tx:
            if queue is not None:
                await self.require_queue(tx, queue)
            if dry_run:
                found = await tx.preview_dead(
                    queue=queue, task=None, ids=None, sample=SAMPLE, scope=self.scope
                )
            else:
                found = await tx.purge_dead(queue=queue, sample=SAMPLE, scope=self.scope)
                await tx.record_audit(
                    actor,
                    action,
                    f"queue:{queue}" if queue else "dead",
                    {"queue": queue, "count": found.count},
                    "ok" if found.count else "noop",
                    **self.audit_scope(found.tenants, found.queues or ([queue] if queue else [])),
                )
        verb = "would delete" if dry_run else "deleted"
        where = f" of queue {queue!r}" if queue else ""
        return BulkResult(
            action=action,
            dry_run=dry_run,
            count=found.count,
            sample=list(found.sample),
            queue=queue,
            message=f"{verb} {found.count} dead job(s){where}",
        )

    async def prune_preview(
        self, retention: float | None = None, dead_retention: float | None = None
    ) -> BulkResult:
        """Count the jobs the pruner would delete now with these retentions (by default the
        configured ones). Changes nothing: run it before shortening a retention, since the
        elected queuer deletes everything past the new one at its next prune pass."""
        self.refuse_tenant_scoped("a prune preview")
        maintenance = self.settings.maintenance
        finished_after = check_seconds(retention, "retention")
        dead_after = check_seconds(dead_retention, "dead_retention")
        finished_after = maintenance.retention if finished_after is None else finished_after
        dead_after = maintenance.dead_retention if dead_after is None else dead_after
        async with self.session() as store:
            found = await store.prune_preview(finished_after, dead_after)
        finished, dead = found.finished, found.dead
        return BulkResult(
            action="prune",
            dry_run=True,
            count=finished + dead,
            sample=[],
            message=(
                f"would delete {finished + dead} job(s) now: {finished} completed or cancelled "
                f"older than {format_duration(finished_after)}, {dead} dead older than "
                f"{format_duration(dead_after)} (and, after them, their job log rows)"
            ),
        )
