"""OpenTelemetry spans: the producer's trace carried on the job to the worker that runs it.

Enqueue opens a PRODUCER span (`conveyor.enqueue`) and stores its W3C trace context
(traceparent, tracestate) on each job it writes. The worker continues that trace: a
`conveyor.wait` span from the moment the job became due to its claim, and a CONSUMER span
(`conveyor.run`) around the attempt, current while the handler runs, so the handler's own
spans nest under it. Each attempt of a retried job gets its own run span under the same
producer context; `conveyor.attempt` tells them apart.

Tracing is optional. The `otel` extra brings the OpenTelemetry packages; the application
configures a tracer provider (and its exporter) the usual way, and Conveyor uses the
global one. Until both are there, or with `tracing.enabled: false`, every call here is a
cheap no-op: no span, nothing stored on the job (its `trace_context` stays NULL), and the
packages are never imported when tracing is switched off.
"""

from __future__ import annotations

import functools
import importlib.util
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

from conveyor import vocabulary as v

if TYPE_CHECKING:
    from opentelemetry.trace import ProxyTracerProvider, Span, Tracer, TracerProvider

    from conveyor.config import Settings
    from conveyor.store.work import ClaimedJob, Outcome

__all__ = ["EnqueueSpan", "RunSpan", "Tracing", "available"]

INSTRUMENTATION_NAME = "conveyor"
MESSAGING_SYSTEM = "conveyor"
# While no tracer provider is configured, how often to look again for one.
PROVIDER_LOOK_INTERVAL = 1.0
# Outcomes that mean the attempt went wrong: the run span's status is ERROR.
_FAILED_OUTCOMES = frozenset({v.LOG_FAILED, v.LOG_DEAD, v.LOG_LOST})


@functools.cache
def available() -> bool:
    """Whether the OpenTelemetry API can be imported (the `otel` extra is installed).
    Asked once per process; `find_spec` also answers False for a module blocked with
    `sys.modules[name] = None`."""
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except (ImportError, ValueError):
        return False


class EnqueueSpan:
    """The span of one enqueue call: `context` is what each job stores (None when nothing
    is traced), `written` names the jobs once they are in."""

    __slots__ = ("context", "span")

    def __init__(self, span: Span | None, context: dict[str, str] | None) -> None:
        self.span = span
        self.context = context

    def written(self, job_ids: Sequence[object]) -> None:
        if self.span is None:
            return
        if len(job_ids) == 1:
            self.span.set_attribute("messaging.message.id", str(job_ids[0]))
            self.span.set_attribute("conveyor.job_id", str(job_ids[0]))
        else:
            self.span.set_attribute("messaging.batch.message_count", len(job_ids))


class RunSpan:
    """The span of one attempt; `finish` records how it ended (None: the worker lost the
    job's lease, so the rescuer decides what becomes of it)."""

    __slots__ = ("span",)

    def __init__(self, span: Span | None) -> None:
        self.span = span

    def finish(self, outcome: Outcome | None) -> None:
        span = self.span
        if span is None:
            return
        status = v.LOG_LOST if outcome is None else outcome.log_status
        span.set_attribute("conveyor.outcome", status)
        if status not in _FAILED_OUTCOMES:
            return
        from opentelemetry.trace import Status, StatusCode

        error = "the worker lost the job's lease" if outcome is None else outcome.error
        if outcome is not None and outcome.error is not None:
            # Built from the stored error, not the exception object: that text has had the
            # clear values of encrypted payload fields redacted; the exception has not.
            kind, _, message = outcome.error.partition(": ")
            span.add_event(
                "exception",
                {
                    "exception.type": kind,
                    "exception.message": message,
                    "exception.stacktrace": outcome.traceback or "",
                },
            )
        span.set_status(Status(StatusCode.ERROR, error))


_NOT_TRACED: AbstractContextManager[EnqueueSpan] = nullcontext(EnqueueSpan(None, None))
_NOT_RUN_TRACED: AbstractContextManager[RunSpan] = nullcontext(RunSpan(None))


class Tracing:
    """Conveyor's spans in one process. `provider` defaults to the global tracer provider,
    looked up at most once a second until the application has configured one (it may do so
    after building its Conveyor), then kept."""

    def __init__(self, enabled: bool = True, provider: TracerProvider | None = None) -> None:
        self.enabled = enabled and available()
        self._provider = provider
        self._tracer: Tracer | None = None
        self._global_provider: Callable[[], TracerProvider] | None = None
        self._unset: type[ProxyTracerProvider] | None = None
        self._next_look = 0.0
        if self.enabled and provider is None:
            from opentelemetry import trace

            self._global_provider = trace.get_tracer_provider
            self._unset = trace.ProxyTracerProvider

    @classmethod
    def from_settings(cls, settings: Settings) -> Tracing:
        return cls(settings.tracing.enabled)

    def tracer(self) -> Tracer | None:
        """The tracer, or None while there is nothing to record spans with."""
        if self._tracer is not None or not self.enabled:
            return self._tracer
        provider = self._provider
        if self._global_provider is not None:
            # Asking costs microseconds (it reads the environment): while none is configured,
            # ask once a second, not on every enqueue and every attempt.
            now = time.monotonic()
            if now < self._next_look:
                return None
            provider = self._global_provider()
            if self._unset is not None and isinstance(provider, self._unset):
                self._next_look = now + PROVIDER_LOOK_INTERVAL
                return None  # no provider configured (yet): spans would go nowhere
        if provider is None:
            return None
        self._tracer = provider.get_tracer(INSTRUMENTATION_NAME)
        return self._tracer

    @property
    def active(self) -> bool:
        return self.tracer() is not None

    def enqueue(self, queue: str, task: str) -> AbstractContextManager[EnqueueSpan]:
        """Around an enqueue: the PRODUCER span, current while the jobs are written."""
        tracer = self.tracer()
        return _NOT_TRACED if tracer is None else _enqueue_span(tracer, queue, task)

    def job(self, job: ClaimedJob) -> AbstractContextManager[RunSpan]:
        """Around one attempt: the wait span (already over), then the run span, current
        until the attempt ends."""
        tracer = self.tracer()
        return _NOT_RUN_TRACED if tracer is None else _run_span(tracer, job)


def _messaging(queue: str, operation: str, kind: str) -> dict[str, str]:
    return {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.destination.name": queue,
        "messaging.operation.name": operation,
        "messaging.operation.type": kind,
    }


@contextmanager
def _enqueue_span(tracer: Tracer, queue: str, task: str) -> Iterator[EnqueueSpan]:
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    attributes = {**_messaging(queue, "enqueue", "send"), "conveyor.queue": queue}
    attributes["conveyor.task"] = task
    with tracer.start_as_current_span(
        "conveyor.enqueue", kind=SpanKind.PRODUCER, attributes=attributes
    ) as span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield EnqueueSpan(span, carrier or None)


@contextmanager
def _run_span(tracer: Tracer, job: ClaimedJob) -> Iterator[RunSpan]:
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    parent = propagate.extract(job.trace_context) if job.trace_context else None
    attributes: dict[str, str | int] = {
        **_messaging(job.queue, "run", "process"),
        "messaging.message.id": str(job.id),
        "conveyor.queue": job.queue,
        "conveyor.task": job.task,
        "conveyor.job_id": str(job.id),
        "conveyor.attempt": job.attempt,
    }
    # The span's ends are on this host's clock, like every span it exports; its length is
    # PostgreSQL's (`waited`, from the claim), so clock skew between hosts cannot bend it.
    claimed = time.time_ns()
    wait = tracer.start_span(
        "conveyor.wait",
        context=parent,
        attributes=attributes,
        start_time=claimed - max(0, int(job.waited * 1e9)),
    )
    wait.end(end_time=claimed)
    with tracer.start_as_current_span(
        "conveyor.run",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        start_time=claimed,
    ) as span:
        yield RunSpan(span)
