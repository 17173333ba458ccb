"""The worker loop: pop, claim, run, report; heartbeat; drain on shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from conveyor import metrics, watchdog
from conveyor.config import Settings
from conveyor.encryption import PayloadCipher
from conveyor.errors import DatabaseUnavailable, RedisUnavailable, StatementRejected
from conveyor.lanes import Lanes
from conveyor.log_context import job_context, job_fields
from conveyor.middleware import Hooks, Middleware
from conveyor.postgres_only import NORMAL, POSTGRES_ONLY, Mode
from conveyor.results import ResultCodec
from conveyor.retry import RetryPolicy
from conveyor.retrying import Backoff
from conveyor.store import Store
from conveyor.store.work import ClaimedJob, WorkStatements
from conveyor.tasks import JobContext, TaskRegistry
from conveyor.tracing import Tracing
from conveyor.worker import progress
from conveyor.worker.breaker import Breakers
from conveyor.worker.completer import Completer
from conveyor.worker.execute import HandedBack, run_job
from conveyor.worker.fetch import Fetcher
from conveyor.worker.health import WorkerHealth
from conveyor.worker.leases import LeaseTrust
from conveyor.worker.outcome import COMPLETED, DEAD, HANDED_BACK, RETRY, Outcome

log = logging.getLogger("conveyor.worker")


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class WorkerOptions:
    queues: list[str]
    concurrency: int = 10
    lane_order: Literal["queue", "priority"] = "queue"
    worker_id: str = field(default_factory=new_worker_id)
    # Queue weights (`--queues email:5,warmup:1`); empty: the queues in strict order.
    weights: dict[str, int] = field(default_factory=dict)


@dataclass
class InFlight:
    job: ClaimedJob
    ctx: JobContext
    task: asyncio.Task[Outcome | None]
    is_async: bool
    handing_back: bool = False


class Worker:
    """Runs the jobs of `tasks` (the worker's own registry: the tasks imported from the
    user's app) on `settings`. The store, the lanes and the payload cipher all come from
    those settings; pass `store` or `lanes` to share ones the caller opened and closes.
    `middleware` is the app's (`app.middleware`): attempt hooks and outcome events."""

    def __init__(
        self,
        settings: Settings,
        tasks: TaskRegistry,
        options: WorkerOptions,
        *,
        store: WorkStatements | None = None,
        lanes: Lanes | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        if not options.queues:
            raise ValueError("a worker needs at least one queue to serve")
        self.settings = settings
        self.tasks = tasks
        self.options = options
        self.id = options.worker_id
        self.cipher = PayloadCipher(settings.encryption.keys, settings.encryption.fields)
        self.results = ResultCodec(self.cipher, settings.jobs.max_result_bytes)
        self.counts: Counter[str] = Counter()
        self.ready = False
        self.not_ready_reason = "starting"
        self.in_flight: dict[uuid.UUID, InFlight] = {}
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=options.concurrency * 2, thread_name_prefix="conveyor-job"
        )
        self._fallback_retry = RetryPolicy(
            base=settings.retry.base, cap=settings.retry.cap, jitter=settings.retry.jitter
        )
        breaker = settings.circuit_breaker
        self.breakers = Breakers(
            breaker.enabled, breaker.failure_threshold, breaker.cooldown_period
        )
        self._store = store
        self._lanes = lanes
        self._owns_store = store is None
        self._owns_lanes = lanes is None
        self.completer: Completer | None = None
        self.fetcher: Fetcher | None = None
        self.leases = LeaseTrust(settings.worker.lease)
        self.health = WorkerHealth()
        self.tracing = Tracing.from_settings(settings)
        self.hooks = Hooks(middleware)

    @property
    def store(self) -> WorkStatements:
        if self._store is None:
            raise RuntimeError("the worker is not started")
        return self._store

    @property
    def lanes(self) -> Lanes:
        if self._lanes is None:
            raise RuntimeError("the worker is not started")
        return self._lanes

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self._store is None:
            # Four connections: claims, outcomes and heartbeats each hold one briefly.
            self._store = await Store.open(self.settings, "worker")
        if self._lanes is None:
            self._lanes = Lanes.open(self.settings)
        hooks = self.hooks
        self.completer = Completer(self._store, hooks.committed if hooks.listening else None)
        self.completer.start()
        options = self.options
        self.fetcher = Fetcher(
            self.settings,
            self.id,
            options.queues,
            options.lane_order,
            self._store,
            self._lanes,
            self.breakers,
            self.counts,
            options.weights,
        )

    async def run(self, stop: asyncio.Event, grace: float | None = None) -> None:
        """Work until `stop` is set, then drain for `grace` seconds and hand back the rest."""
        if self.completer is None:
            await self.start()
        beat = asyncio.ensure_future(self._heartbeat_loop())
        trust = asyncio.ensure_future(self._watch_leases())
        fetch = asyncio.ensure_future(self._fetch_loop())
        await stop.wait()
        self._stopping.set()
        self._slot_freed.set()
        await fetch
        await self.drain(self.settings.worker.shutdown_grace if grace is None else grace)
        beat.cancel()
        trust.cancel()
        watchdog.done("worker.heartbeat")
        await self.close()

    def request_stop_now(self) -> None:
        """A second signal: hand back everything at once."""
        for flight in list(self.in_flight.values()):
            self._hand_back(flight)

    async def drain(self, grace: float) -> None:
        if self.in_flight:
            log.info("waiting up to %.0f s for %d job(s) to finish", grace, len(self.in_flight))
            await asyncio.wait([f.task for f in self.in_flight.values()], timeout=grace)
        for flight in list(self.in_flight.values()):
            self._hand_back(flight)
        if self.in_flight:
            await asyncio.wait([f.task for f in self.in_flight.values()], timeout=5)

    @property
    def mode(self) -> Mode:
        """Postgres-only while no Redis answers and jobs are claimed from PostgreSQL."""
        return self.fetcher.mode.mode if self.fetcher is not None else NORMAL

    async def close(self) -> None:
        if self.fetcher is not None:
            await self.fetcher.close()
        if self.completer is not None:
            await self.completer.close()
        if self._store is not None:
            try:
                await self._store.deregister_worker(self.id)
            except (DatabaseUnavailable, StatementRejected) as error:
                log.warning("could not mark worker %s stopped: %s", self.id, error)
            if self._owns_store:
                await self._store.close()
        if self._lanes is not None and self._owns_lanes:
            await self._lanes.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- fetching ------------------------------------------------------------------------

    async def _register(self) -> None:
        await self.store.register_worker(
            self.id,
            socket.gethostname(),
            os.getpid(),
            self.options.queues,
            self.options.concurrency,
        )

    async def _fetch_loop(self) -> None:
        backoff = Backoff(initial=0.1, cap=5.0)
        registered = False
        while not self._stopping.is_set():
            watchdog.beat("worker.fetch")
            free = self.options.concurrency - len(self.in_flight)
            if free <= 0:
                self._slot_freed.clear()
                with watchdog.waiting("worker.fetch"):
                    await self._slot_freed.wait()
                continue
            try:
                if not registered:
                    await self._register()
                    registered = True
                await self._fetch(free)
                backoff.reset()
                self.ready, self.not_ready_reason = True, ""
            except (RedisUnavailable, DatabaseUnavailable) as error:
                where = "Redis" if isinstance(error, RedisUnavailable) else "PostgreSQL"
                delay = backoff.next()
                self.ready, self.not_ready_reason = False, f"{where} unreachable: {error}"
                log.warning("%s unreachable (%s); retrying in %.1f s", where, error, delay)
                self.counts["errors"] += 1
                await asyncio.sleep(delay)
            except StatementRejected as error:
                # Most likely a schema that is not migrated: say so, and keep trying.
                delay = backoff.next()
                self.ready, self.not_ready_reason = False, str(error)
                log.error("%s; retrying in %.1f s", error, delay)
                self.counts["errors"] += 1
                await asyncio.sleep(delay)
            except Exception:
                # The loop must outlive any one bad batch; log it and carry on.
                delay = backoff.next()
                log.exception("unexpected error while fetching jobs; retrying in %.1f s", delay)
                self.counts["errors"] += 1
                await asyncio.sleep(delay)
        watchdog.done("worker.fetch")

    async def _fetch(self, free: int) -> None:
        assert self.fetcher is not None  # noqa: S101
        for job in await self.fetcher.fetch(free):
            metrics.WAIT.labels(job.queue).observe(max(0.0, job.waited))
            self._launch(job)
        metrics.WORKER_ACTIVE.set(len(self.in_flight))

    # -- running -------------------------------------------------------------------------

    def _launch(self, job: ClaimedJob) -> None:
        task = self.tasks.get(job.task)
        ctx = JobContext(job.id, job.task, job.queue, job.attempt, job.max_attempts)
        runner = asyncio.get_running_loop().create_task(self._run_logged(job, ctx))
        self.in_flight[job.id] = InFlight(job, ctx, runner, task is None or task.is_async)

    def _fields(self, job: ClaimedJob) -> dict[str, object]:
        return job_fields(job.id, job.queue, job.task, job.attempt, self.id)

    async def _run_logged(self, job: ClaimedJob, ctx: JobContext) -> Outcome | None:
        # Each attempt is its own task: the context set here is this attempt's alone.
        with job_context(self._fields(job)):
            if self.tracing.active:
                return await self._run_traced(job, ctx)
            return await self._run(job, ctx)

    async def _run_traced(self, job: ClaimedJob, ctx: JobContext) -> Outcome | None:
        with self.tracing.job(job) as span:
            outcome = await self._run(job, ctx)
            span.finish(outcome)
            return outcome

    async def _run(self, job: ClaimedJob, ctx: JobContext) -> Outcome | None:
        """Run one attempt and submit its outcome; None when the lease was lost."""
        assert self.completer is not None  # noqa: S101
        started = time.perf_counter()
        try:
            outcome = await run_job(
                job,
                self.tasks.get(job.task),
                ctx,
                self._executor,
                self._fallback_retry,
                self.cipher,
                self._overran,
                self.results,
                self.hooks if self.hooks.attempting else None,
            )
        except (HandedBack, asyncio.CancelledError):
            outcome = _handed_back(job, started, "worker shut down before the job finished")
        except Exception as error:
            log.exception("internal error running job %s", job.id)
            outcome = _handed_back(job, started, f"internal worker error: {error}")
        self.in_flight.pop(job.id, None)
        if self.leases.forget(job.id):
            # Disowned: once its lease ends the rescuer decides, and the attempt counts.
            self._slot_freed.set()
            return None
        if outcome.log_status in (COMPLETED, RETRY, DEAD):
            self.breakers.record(job.queue, failed=outcome.log_status != COMPLETED)
        self.health.record(outcome)
        self.completer.submit(progress.with_last_progress(outcome, ctx))
        self._slot_freed.set()
        return outcome

    def _overran(self) -> None:
        self.counts["overran"] += 1

    def _hand_back(self, flight: InFlight) -> None:
        if not flight.handing_back:
            flight.handing_back = True
            flight.task.cancel()

    async def _watch_leases(self) -> None:
        interval = self.settings.worker.heartbeat_interval
        await self.leases.watch(lambda: list(self.in_flight.values()), self._disown, interval)

    def _disown(self, flight: InFlight) -> None:
        self.counts["lost_lease"] += 1
        self._cancel(flight)

    def _cancel(self, flight: InFlight) -> None:
        flight.ctx.cancel()
        if flight.is_async:
            flight.task.cancel()

    # -- heartbeat -----------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.worker.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            watchdog.beat("worker.heartbeat")
            try:
                await self.heartbeat()
                metrics.WORKER_ACTIVE.set(len(self.in_flight))
            except DatabaseUnavailable as error:
                log.warning("heartbeat failed: %s", error)
            except Exception:
                # A missed beat is survivable; a dead heartbeat loop is not.
                log.exception("unexpected heartbeat error")

    async def heartbeat(self) -> None:
        flights = self.leases.trusted(list(self.in_flight.values()), self._disown)
        started = self.leases.now()
        vitals = self.health.vitals(self.mode == POSTGRES_ONLY, self.breakers.open_queues())
        contexts = [f.ctx for f in flights]
        reports = progress.unwritten(contexts)
        beat = await self.store.heartbeat(
            self.id,
            self.settings.worker.lease,
            [f.job.id for f in flights],
            [f.job.token for f in flights],
            vitals,
            progress.as_params(reports),
        )
        self.leases.proven(started)
        owned, cancel_requested = set(beat.owned), set(beat.cancel_requested)
        progress.written(contexts, reports, owned)
        if not beat.registered:  # our registry row was pruned or deleted: put it back
            await self._register()
        for flight in flights:
            if flight.job.id not in owned and flight.job.id in self.in_flight:
                self.counts["lost_lease"] += 1
                log.warning(
                    "job %s was taken from this worker (lease lost)",
                    flight.job.id,
                    extra=self._fields(flight.job),
                )
            elif flight.job.id in cancel_requested and not flight.ctx.cancelled:
                log.info(
                    "job %s was cancelled by an operator",
                    flight.job.id,
                    extra=self._fields(flight.job),
                )
                self._cancel(flight)


def _handed_back(job: ClaimedJob, started: float, why: str) -> Outcome:
    duration = time.perf_counter() - started
    return Outcome(job.id, job.token, HANDED_BACK, duration, why, queue=job.queue, task=job.task)


__all__ = ["Worker", "WorkerOptions", "new_worker_id"]
