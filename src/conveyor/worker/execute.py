"""Run one claimed job's handler and turn whatever happens into an Outcome."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any
from uuid import UUID

from conveyor import metrics
from conveyor.encryption import PayloadCipher, redact
from conveyor.errors import JobCancelled, PayloadError, TaskTimeout
from conveyor.human import span
from conveyor.middleware import Hooks
from conveyor.outcomes import Cancel, Discard, HandlerOutcome, Retry, Snooze
from conveyor.results import NO_RESULT, KeptResult, ResultCodec
from conveyor.retry import RetryPolicy
from conveyor.store.work import ClaimedJob, UnreadablePayload
from conveyor.tasks import JobContext, Task
from conveyor.worker.outcome import CANCELLED, COMPLETED, DEAD, RETRY, SNOOZED, Outcome

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
    results: ResultCodec | None = None,
    hooks: Hooks | None = None,
) -> Outcome:
    """`overran` is called when a sync handler is still running at its timeout; `results`
    encodes what a handler returns (no encryption, default size limit when None); `hooks`
    are the app's attempt middleware (None: there is none)."""
    started = time.perf_counter()
    # Every clear value decrypted for this attempt: error text must not carry them away.
    secrets: list[str] = []

    def done(
        status: str,
        error: BaseException | None = None,
        retry_in: float | None = None,
        with_traceback: bool = True,
        value: Any = None,
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
            claimed=job,
            value=value,
            raised=error,
        )

    def failed(
        error: BaseException,
        policy: RetryPolicy,
        retryable: bool = True,
        retry_in: float | None = None,
    ) -> Outcome:
        """`retry_in` is the handler's own choice (Retry): it overrides the policy."""
        chosen = retry_in is not None
        if retryable and job.attempt < job.max_attempts and (chosen or policy.should_retry(error)):
            delay = retry_in if retry_in is not None else policy.delay(job.attempt, error)
            outcome = done(RETRY, error, retry_in=delay)
            log.warning(
                "job %s (%s) failed on attempt %d of %d, retrying in %s: %s",
                job.id,
                job.task,
                job.attempt,
                job.max_attempts,
                span(outcome.retry_in or 0.0),
                _first_line(outcome.error),
            )
            return outcome
        outcome = done(DEAD, error)
        log.error(
            "job %s (%s) failed on attempt %d of %d and is dead: %s",
            job.id,
            job.task,
            job.attempt,
            job.max_attempts,
            _first_line(outcome.error),
        )
        return outcome

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
        if job.parent_results is not None:
            _give_parent_results(ctx, job.parent_results, results or _PLAIN)
    except PayloadError as error:
        # The stored payload will not change by itself: retrying cannot help.
        return failed(error, task.retry, retryable=False)

    def asked(request: HandlerOutcome) -> Outcome:
        """The outcome the handler asked for (raised or returned)."""
        if isinstance(request, Snooze):
            if job.snoozes < task.max_snoozes:
                log.info("job %s (%s) snoozed for %s", job.id, job.task, span(request.seconds))
                return done(SNOOZED, request, retry_in=request.seconds, with_traceback=False)
            # Past its free snoozes a snooze uses an attempt, so it cannot go on forever.
            return failed(
                RuntimeError(f"snoozed more than {task.max_snoozes} times: {request}"),
                task.retry,
                retry_in=request.seconds,
            )
        if isinstance(request, Retry):
            return failed(request, task.retry, retry_in=request.in_seconds)
        if isinstance(request, Cancel):
            return done(CANCELLED, request, with_traceback=False)
        if isinstance(request, Discard):
            log.warning("job %s (%s) discarded by its handler: %s", job.id, job.task, request)
            return done(DEAD, request, with_traceback=False)
        return failed(TypeError(f"unknown handler outcome {request!r}"), task.retry)

    call = _bind(task, argument, ctx)
    try:
        if hooks is not None:
            result = await hooks.around_attempt(
                ctx, lambda: _invoke(task, call, job, executor, overran)
            )
        elif task.is_async:
            result = await _with_timeout(call(), job.timeout)
        else:
            result = await _in_thread(job, call, executor, overran)
    except HandedBack:
        raise
    except HandlerOutcome as request:
        if ctx.cancelled:
            return done(
                CANCELLED, JobCancelled(f"job {job.id} was cancelled"), with_traceback=False
            )
        return asked(request)
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
    if isinstance(result, HandlerOutcome):
        return asked(result)
    kept = (results or _PLAIN).encode(result, job.id, job.task)
    return _completed(done(COMPLETED, value=result), kept)


_PLAIN = ResultCodec()


def _completed(outcome: Outcome, kept: KeptResult) -> Outcome:
    if kept is NO_RESULT:
        return outcome
    if kept.error is not None:
        log.error("job %s (%s) completed, but %s", outcome.job_id, outcome.task, kept.error)
    return replace(outcome, result=kept.text, result_error=kept.error)


async def _invoke(
    task: Task,
    call: Callable[[], Any],
    job: ClaimedJob,
    executor: Executor,
    overran: Callable[[], None] | None,
) -> Any:
    if task.is_async:
        return await _with_timeout(call(), job.timeout)
    return await _in_thread(job, call, executor, overran)


def _give_parent_results(
    ctx: JobContext, parents: list[dict[str, Any]], results: ResultCodec
) -> None:
    """Open each parent's result (sealed fields are bound to the parent's id)."""
    ids = [UUID(str(parent["id"])) for parent in parents]
    ctx.parent_ids = ids
    ctx.parent_results = [
        results.decode(parent.get("result"), job_id)
        for parent, job_id in zip(parents, ids, strict=True)
    ]


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
    # A copy of this attempt's context, so the handler's own log lines carry the job's
    # fields in the thread too (run_in_executor, unlike a task, does not copy it).
    context = contextvars.copy_context()
    future = asyncio.get_running_loop().run_in_executor(executor, context.run, call)
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


def _first_line(text: str | None, limit: int = 500) -> str:
    """The head of an error for a log line (the attempt's row keeps all of it)."""
    line = (text or "").strip().split("\n", 1)[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _describe(error: BaseException) -> str:
    text = str(error)
    name = type(error).__name__
    return _clean(f"{name}: {text}" if text else name, MAX_ERROR_CHARS)


def _traceback(error: BaseException) -> str:
    return _clean("".join(traceback.format_exception(error)), MAX_TRACEBACK_CHARS)
