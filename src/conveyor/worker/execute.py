"""Run one claimed job's handler and turn whatever happens into an Outcome."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from conveyor import metrics
from conveyor.encryption import PayloadCipher, redact
from conveyor.errors import JobCancelled, PayloadError, TaskTimeout
from conveyor.retry import RetryPolicy
from conveyor.store.work import ClaimedJob, UnreadablePayload
from conveyor.tasks import JobContext, Task
from conveyor.worker.outcome import CANCELLED, COMPLETED, DEAD, RETRY, Outcome

log = logging.getLogger("conveyor.worker")


class HandedBack(Exception):
    """The worker is shutting down and interrupted this attempt."""


async def run_job(
    job: ClaimedJob,
    task: Task | None,
    ctx: JobContext,
    executor: Executor,
    fallback_retry: RetryPolicy,
    cipher: PayloadCipher | None = None,
    overran: Callable[[], None] | None = None,
) -> Outcome:
    """`overran` is called when a sync handler is still running at its timeout."""
    started = time.perf_counter()
    # Every clear value decrypted for this attempt: error text must not carry them away.
    secrets: list[str] = []

    def done(
        status: str,
        error: BaseException | None = None,
        retry_in: float | None = None,
        with_traceback: bool = True,
    ) -> Outcome:
        return Outcome(
            job_id=job.id,
            token=job.token,
            log_status=status,
            duration=time.perf_counter() - started,
            error=None if error is None else redact(_describe(error), secrets),
            traceback=(
                redact(_traceback(error), secrets) if error is not None and with_traceback else None
            ),
            retry_in=retry_in,
            queue=job.queue,
            task=job.task,
        )

    def failed(error: BaseException, policy: RetryPolicy, retryable: bool = True) -> Outcome:
        if retryable and job.attempt < job.max_attempts and policy.should_retry(error):
            return done(RETRY, error, retry_in=policy.delay(job.attempt))
        return done(DEAD, error)

    if task is None:
        # Perhaps a deploy in progress: a later attempt may land on a worker that has it.
        error = LookupError(f"unknown task {job.task!r}: no handler registered in this worker")
        return failed(error, fallback_retry)
    try:
        payload = job.payload
        if isinstance(payload, UnreadablePayload):
            raise PayloadError(f"cannot parse the stored payload: {payload.reason}")
        if cipher is not None:
            opened = cipher.open(payload, job.id)
            payload = opened.payload
            secrets.extend(opened.secrets)
        argument = task.decode_payload(payload)
    except PayloadError as error:
        # The stored payload will not change by itself: retrying cannot help.
        return failed(error, task.retry, retryable=False)
    call = _bind(task, argument, ctx)
    try:
        if task.is_async:
            await _with_timeout(call(), job.timeout)
        else:
            await _in_thread(job, call, executor, overran)
    except HandedBack:
        raise
    except JobCancelled as error:
        return done(CANCELLED, error, with_traceback=False)
    except asyncio.CancelledError:
        if ctx.cancelled:
            return done(
                CANCELLED, JobCancelled(f"job {job.id} was cancelled"), with_traceback=False
            )
        raise
    except TaskTimeout as error:
        if ctx.cancelled:  # an operator asked while the handler overran: do as asked
            return done(
                CANCELLED, JobCancelled(f"job {job.id} was cancelled"), with_traceback=False
            )
        return failed(error, task.retry)
    except Exception as error:  # noqa: BLE001 - any handler error is the job's failure
        return failed(error, task.retry)
    if ctx.cancelled:
        return done(CANCELLED, JobCancelled(f"job {job.id} was cancelled"), with_traceback=False)
    return done(COMPLETED)


def _bind(task: Task, argument: Any, ctx: JobContext) -> Callable[[], Any]:
    if task.wants_context:
        return lambda: task.func(argument, ctx)
    return lambda: task.func(argument)


async def _in_thread(
    job: ClaimedJob,
    call: Callable[[], Any],
    executor: Executor,
    overran: Callable[[], None] | None,
) -> Any:
    """Run a sync handler in a thread. A thread cannot be stopped, so at the timeout the
    attempt keeps its slot and its lease (the heartbeat renews it) until the handler
    returns; only then is the timeout recorded and a retry scheduled. Otherwise the retry
    could run beside the first run, which is still doing the job's work."""
    # In the attempt's context (unlike run_in_executor alone): the handler's own spans and
    # context variables then see the attempt's, as an async handler's do.
    in_context = functools.partial(contextvars.copy_context().run, call)
    future = asyncio.get_running_loop().run_in_executor(executor, in_context)
    try:
        if job.timeout is None:
            return await future
        await asyncio.wait({future}, timeout=job.timeout)
        if future.done():
            return future.result()
        log.warning(
            "job %s (%s) is still running after its %g s timeout; a thread cannot be "
            "stopped, so its retry waits until the handler returns",
            job.id,
            job.task,
            job.timeout,
        )
        metrics.OVERRAN.labels(job.queue, job.task).inc()
        if overran is not None:
            overran()
        started = time.perf_counter()
        # The attempt has failed by timeout, whatever the handler does now.
        with contextlib.suppress(Exception):
            await future
        log.info("job %s returned %.1f s after its timeout", job.id, time.perf_counter() - started)
        raise TaskTimeout(job.timeout)
    except asyncio.CancelledError:
        future.cancel()
        raise


async def _with_timeout(awaitable: Any, limit: float | None) -> Any:
    if limit is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, limit)
    except TimeoutError:
        raise TaskTimeout(limit) from None


MAX_ERROR_CHARS = 10_000
MAX_TRACEBACK_CHARS = 64_000


def _clean(text: str, limit: int) -> str:
    # PostgreSQL text cannot hold NUL; a huge message must not bloat every log row.
    text = text.replace("\x00", "\\0")
    return text if len(text) <= limit else text[: limit - 20] + " ... (truncated)"


def _describe(error: BaseException) -> str:
    text = str(error)
    name = type(error).__name__
    return _clean(f"{name}: {text}" if text else name, MAX_ERROR_CHARS)


def _traceback(error: BaseException) -> str:
    return _clean("".join(traceback.format_exception(error)), MAX_TRACEBACK_CHARS)
