"""Writes attempt outcomes in batches.

Outcomes queue up while a write is in flight and go together in the next statement, so a
busy worker writes one statement per batch and an idle one writes at once: no timer,
no added latency. A job counts as finished only once that statement has committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence

from conveyor import metrics, watchdog
from conveyor.errors import DatabaseUnavailable, StatementRejected
from conveyor.log_context import job_fields
from conveyor.retrying import Backoff
from conveyor.store.work import WorkStatements
from conveyor.worker.outcome import CANCELLED, COMPLETED, DEAD, RETRY, SNOOZED, Outcome

log = logging.getLogger("conveyor.worker")
MAX_BATCH = 1000
# A batch is one jsonb parameter: results (up to jobs.max_result_bytes each) must not grow
# it towards PostgreSQL's limits or make one statement hold megabytes in memory.
MAX_BATCH_RESULT_CHARS = 16 * 1_048_576


class Completer:
    """`committed` is called with the outcomes of each batch once PostgreSQL has them
    (the middleware events, conveyor.middleware)."""

    def __init__(
        self,
        store: WorkStatements,
        committed: Callable[[Sequence[Outcome]], None] | None = None,
    ) -> None:
        self.store = store
        self.committed = committed
        self.counts: Counter[str] = Counter()
        self._pending: list[Outcome] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def submit(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Wait until everything submitted so far has been written (or given up on)."""
        if self._pending:
            self._wake.set()
            await self._idle.wait()

    async def close(self) -> None:
        await self.flush()
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        backoff = Backoff(initial=0.05, cap=5.0)
        while True:
            with watchdog.waiting("worker.outcomes"):
                await self._wake.wait()
            self._wake.clear()
            while self._pending:
                watchdog.beat("worker.outcomes")
                batch = self._take()
                try:
                    await self._write(batch)
                    backoff.reset()
                except DatabaseUnavailable as error:
                    # Keep the outcomes: PostgreSQL is the only place they may land.
                    self._pending[:0] = batch
                    delay = backoff.next()
                    log.warning(
                        "could not record %d outcome(s) (%s); retrying in %.1f s",
                        len(batch),
                        error,
                        delay,
                    )
                    await asyncio.sleep(delay)
                except StatementRejected as error:
                    log.error("PostgreSQL refused a batch of %d outcome(s): %s", len(batch), error)
                    await self._write_each(batch)
            self._idle.set()
            if self._closing:
                watchdog.done("worker.outcomes")
                return

    def _take(self) -> list[Outcome]:
        """The next batch: up to MAX_BATCH outcomes whose results add up to at most
        MAX_BATCH_RESULT_CHARS (always at least one outcome)."""
        count, chars = 0, 0
        for outcome in self._pending[:MAX_BATCH]:
            if outcome.result is not None:
                chars += len(outcome.result)
                if chars > MAX_BATCH_RESULT_CHARS and count:
                    break
            count += 1
        batch, self._pending = self._pending[:count], self._pending[count:]
        return batch

    async def _write_each(self, batch: list[Outcome]) -> None:
        """One refused outcome must not take the batch with it. Alone, a refused one is
        dropped: its lease runs out and the job runs again."""
        for outcome in batch:
            try:
                await self._write([outcome])
            except DatabaseUnavailable:
                self._pending.append(outcome)
            except StatementRejected as error:
                log.error(
                    "dropped the outcome of job %s: %s",
                    outcome.job_id,
                    error,
                    extra=job_fields(outcome.job_id, outcome.queue, outcome.task),
                )
                self.counts["refused"] += 1

    async def _write(self, batch: list[Outcome]) -> None:
        applied = await self.store.record_outcomes(batch)
        landed = []
        for outcome in batch:
            if outcome.job_id in applied:
                self.counts[outcome.log_status] += 1
                landed.append(outcome)
            else:
                # The attempt lost its lease (rescued, then maybe claimed again): fenced.
                self.counts["stale"] += 1
                metrics.STALE.inc()
                log.warning(
                    "stale attempt of job %s (token %d) ignored: %s",
                    outcome.job_id,
                    outcome.token,
                    outcome.log_status,
                    extra=job_fields(outcome.job_id, outcome.queue, outcome.task),
                )
        observe(landed)
        if self.committed is not None and landed:
            try:
                self.committed(landed)
            except Exception:
                # Hooks report their own errors; this guards the writer against a bug
                # there: the outcomes are committed, and the next batch must go too.
                log.exception("middleware events failed for %d outcome(s)", len(landed))


def observe(outcomes: list[Outcome]) -> None:
    """Count outcomes once PostgreSQL has them, never before. Counters are added per batch:
    in multiprocess mode every metric update is a write to a shared file."""
    totals: Counter[tuple[str, str, str]] = Counter()
    for outcome in outcomes:
        metrics.PROCESSING.labels(outcome.queue, outcome.task).observe(outcome.duration)
        totals[(outcome.log_status, outcome.queue, outcome.task)] += 1
    for (status, queue, task), count in totals.items():
        if status == COMPLETED:
            metrics.COMPLETED.labels(queue, task).inc(count)
        elif status in (RETRY, DEAD):
            metrics.FAILED.labels(queue, task).inc(count)
            (metrics.RETRIED if status == RETRY else metrics.DEAD).labels(queue, task).inc(count)
        elif status == CANCELLED:
            metrics.CANCELLED.labels(queue, task).inc(count)
        elif status == SNOOZED:
            metrics.SNOOZED.labels(queue, task).inc(count)
