"""OpenTelemetry: the producer's trace context travels on the job, and the worker that runs
it (in this process or another) continues the same trace with wait and run spans."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conveyor.app import Conveyor
from conveyor.config import Settings, load_settings
from conveyor.store import Store
from conveyor.tasks import JobContext
from conveyor.tracing import Tracing
from conveyor.vocabulary import COMPLETED, DISPATCHED, LOG_COMPLETED, LOG_FAILED
from tests.apps import traced
from tests.apps.traced import span_record
from tests.conftest import Running, wait_until
from tests.factories import add_job
from tests.processes import ROOT, Processes, env_for, finished


class Spans:
    """A tracer provider of the test's own (the process-wide one stays unset, so other
    tests are not traced), recording finished spans in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests")

    def tracing(self) -> Tracing:
        return Tracing(provider=self.provider)

    def records(self) -> list[dict[str, Any]]:
        finished: tuple[ReadableSpan, ...] = self.exporter.get_finished_spans()
        return [span_record(span) for span in finished]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [span for span in self.records() if span["name"] == name]


@pytest.fixture
def spans() -> Iterator[Spans]:
    recorded = Spans()
    yield recorded
    recorded.provider.shutdown()


def stored_context(db: psycopg.Connection[Any], job_id: UUID) -> Any:
    row = db.execute(b"SELECT trace_context FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None, "the job is missing"
    return row[0]


def traceparent_ids(context: dict[str, str]) -> tuple[str, str]:
    """(trace id, parent span id) of a W3C traceparent: version-trace-span-flags."""
    version, trace_id, span_id, _flags = context["traceparent"].split("-")
    assert version == "00"
    return trace_id, span_id


def test_enqueue_inside_a_span_stores_the_enqueue_spans_context(
    app: Conveyor, spans: Spans, db: psycopg.Connection[Any]
) -> None:
    app.tasks.update(traced.app.tasks)
    app.tracing = spans.tracing()
    with spans.tracer.start_as_current_span("checkout"):
        one = app.enqueue("greet", {})
        many = app.enqueue_many("greet", [{}, {}], queue="elsewhere")
    (checkout,) = spans.named("checkout")
    single, batch = spans.named("conveyor.enqueue")
    for enqueue in (single, batch):
        assert enqueue["kind"] == "PRODUCER"
        assert enqueue["trace_id"] == checkout["trace_id"]
        assert enqueue["parent_id"] == checkout["span_id"]
    assert single["attributes"] == {
        "messaging.system": "conveyor",
        "messaging.destination.name": "traced",
        "messaging.operation.name": "enqueue",
        "messaging.operation.type": "send",
        "messaging.message.id": str(one),
        "conveyor.queue": "traced",
        "conveyor.task": "greet",
        "conveyor.job_id": str(one),
    }
    assert batch["attributes"]["messaging.destination.name"] == "elsewhere"
    assert batch["attributes"]["messaging.batch.message_count"] == 2
    # Each job carries the context of the span that wrote it: the worker's spans go under it.
    assert traceparent_ids(stored_context(db, one)) == (checkout["trace_id"], single["span_id"])
    for job_id in many:
        assert traceparent_ids(stored_context(db, job_id)) == (
            checkout["trace_id"],
            batch["span_id"],
        )


def test_a_workflow_is_one_enqueue_span_whose_context_every_job_carries(
    app: Conveyor, spans: Spans, db: psycopg.Connection[Any]
) -> None:
    app.tasks.update(traced.app.tasks)
    app.tracing = spans.tracing()
    greet = app.tasks["greet"]
    with spans.tracer.start_as_current_span("checkout"):
        chord = app.chord([greet.s({}), greet.s({})], greet.s({}))
    (checkout,) = spans.named("checkout")
    (enqueue,) = spans.named("conveyor.enqueue")
    assert enqueue["parent_id"] == checkout["span_id"]
    assert enqueue["attributes"]["messaging.batch.message_count"] == 3
    for job_id in (*chord.header, chord.callback):
        assert traceparent_ids(stored_context(db, job_id)) == (
            checkout["trace_id"],
            enqueue["span_id"],
        )


async def test_async_enqueue_stores_the_context_too(
    app: Conveyor, spans: Spans, db: psycopg.Connection[Any]
) -> None:
    app.tasks.update(traced.app.tasks)
    app.tracing = spans.tracing()
    with spans.tracer.start_as_current_span("request"):
        job_id = await app.aenqueue("greet", {})
    await app.aclose()
    (enqueue,) = spans.named("conveyor.enqueue")
    assert traceparent_ids(stored_context(db, job_id)) == (enqueue["trace_id"], enqueue["span_id"])


def test_nothing_is_recorded_or_stored_without_a_provider_or_when_switched_off(
    app: Conveyor, spans: Spans, db: psycopg.Connection[Any]
) -> None:
    app.tasks.update(traced.app.tasks)
    # No provider passed and none configured for the process: spans would go nowhere.
    assert not app.tracing.active
    with spans.tracer.start_as_current_span("caller"):
        unconfigured = app.enqueue("greet", {})
        app.tracing = Tracing(enabled=False, provider=spans.provider)
        switched_off = app.enqueue_many("greet", [{}])
    assert stored_context(db, unconfigured) is None
    assert stored_context(db, switched_off[0]) is None
    assert [span["name"] for span in spans.records()] == ["caller"]


async def test_both_claims_hand_the_stored_context_to_the_worker(
    settings: Settings, db: psycopg.Connection[Any]
) -> None:
    context = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    popped = add_job(db, "lanes", status=DISPATCHED, trace_context=json.dumps(context))
    ready = add_job(db, "direct", trace_context=json.dumps(context))
    untraced = add_job(db, "direct")
    store = await Store.open(settings, "test", size=1)
    try:
        await store.register_worker("w1", "host", 1, ["lanes", "direct"], 4)
        (claimed,) = await store.claim_jobs([str(popped)], "w1", 30)
        assert claimed.trace_context == context
        direct = await store.claim_ready_direct(["direct"], 4, "w1", 30)
        assert {job.id: job.trace_context for job in direct} == {ready: context, untraced: None}
    finally:
        await store.close()


def test_the_setting_switches_tracing_off() -> None:
    assert Settings().tracing.enabled
    settings = load_settings(env={"TRACING_ENABLED": "false"})
    assert not settings.tracing.enabled
    assert not Tracing.from_settings(settings).enabled


async def test_the_worker_continues_the_trace_with_wait_and_run_spans(
    app: Conveyor, running: Running, spans: Spans
) -> None:
    @app.task(name="flaky", queue="traced", max_attempts=3)
    def flaky(payload: dict[str, Any], ctx: JobContext) -> None:
        # A sync handler runs in a thread: its spans must still nest under the run span.
        with spans.tracer.start_as_current_span("flaky.handler"):
            if ctx.attempt == 1:
                raise RuntimeError("planned failure")

    app.tracing = spans.tracing()
    with spans.tracer.start_as_current_span("signup"):
        job_id = app.enqueue("flaky", {}, priority=10)
    running.queuer()
    running.worker(["traced"]).tracing = spans.tracing()
    await wait_until(lambda: app.get_job(job_id).status == COMPLETED, message="the job to end")

    (enqueue,) = spans.named("conveyor.enqueue")
    runs = sorted(
        spans.named("conveyor.run"), key=lambda span: span["attributes"]["conveyor.attempt"]
    )
    waits = spans.named("conveyor.wait")
    handlers = spans.named("flaky.handler")
    assert len(runs) == len(waits) == len(handlers) == 2, "one of each per attempt"
    for span in runs + waits + handlers:
        assert span["trace_id"] == enqueue["trace_id"]
    for span in runs + waits:
        # Every attempt, the retry too, hangs under the enqueue that made the job.
        assert span["parent_id"] == enqueue["span_id"]
        assert span["attributes"]["conveyor.job_id"] == str(job_id)
        assert span["attributes"]["conveyor.task"] == "flaky"
        assert span["attributes"]["conveyor.queue"] == "traced"
        assert span["attributes"]["messaging.destination.name"] == "traced"
    assert {span["parent_id"] for span in handlers} == {span["span_id"] for span in runs}
    for wait in waits:
        assert wait["kind"] == "INTERNAL"
        assert wait["start"] <= wait["end"]
        assert wait["end"] in {run["start"] for run in runs}, "the wait ends where a run begins"

    failed, completed = runs
    assert failed["kind"] == completed["kind"] == "CONSUMER"
    assert failed["attributes"]["conveyor.attempt"] == 1
    assert failed["attributes"]["conveyor.outcome"] == LOG_FAILED
    assert failed["status"] == "ERROR"
    (exception,) = failed["events"]
    assert exception["name"] == "exception"
    assert exception["attributes"]["exception.type"] == "RuntimeError"
    assert exception["attributes"]["exception.message"] == "planned failure"
    assert "planned failure" in exception["attributes"]["exception.stacktrace"]
    assert completed["attributes"]["conveyor.attempt"] == 2
    assert completed["attributes"]["conveyor.outcome"] == LOG_COMPLETED
    assert completed["status"] == "UNSET"
    assert completed["events"] == []


async def test_an_async_handlers_spans_nest_under_its_run_span(
    app: Conveyor, running: Running, spans: Spans
) -> None:
    @app.task(name="fetch", queue="traced")
    async def fetch(payload: dict[str, Any]) -> None:
        with spans.tracer.start_as_current_span("fetch.handler"):
            return None

    app.tracing = spans.tracing()
    job_id = app.enqueue("fetch", {})
    running.queuer()
    running.worker(["traced"]).tracing = spans.tracing()
    await wait_until(lambda: app.get_job(job_id).status == COMPLETED, message="the job to end")
    (enqueue,) = spans.named("conveyor.enqueue")
    (run,) = spans.named("conveyor.run")
    (handler,) = spans.named("fetch.handler")
    assert enqueue["parent_id"] is None, "no caller span: the enqueue starts the trace"
    assert run["parent_id"] == enqueue["span_id"]
    assert handler["parent_id"] == run["span_id"]
    assert run["attributes"]["conveyor.outcome"] == LOG_COMPLETED


def spans_in(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.fault
async def test_one_trace_links_the_producer_to_a_worker_process(
    app: Conveyor, procs: Processes, spans: Spans, tmp_path: Path
) -> None:
    """The proof across processes: this process enqueues inside its span (in-memory
    exporter); a real worker process (configured by its app module, exporting JSON lines
    to a file) runs the jobs, one of them twice; the worker's spans join this trace."""
    app.tasks.update(traced.app.tasks)
    app.tracing = spans.tracing()
    with spans.tracer.start_as_current_span("place order"):
        steady = app.enqueue("greet", {})
        flaky = app.enqueue("greet", {"fail_first": True})
    worker_spans = tmp_path / "worker-spans.jsonl"
    procs.queuer()
    procs.conveyor(
        *("worker", "--app", "tests.apps.traced:app", "--queues", "traced"),
        name="worker",
        CONVEYOR_TEST_SPANS=str(worker_spans),
    )

    def runs() -> list[dict[str, Any]]:
        return [s for s in spans_in(worker_spans) if s["name"] == "conveyor.run"]

    await wait_until(lambda: len(runs()) == 3, timeout=60, message="three attempts' run spans")

    (order,) = spans.named("place order")
    enqueues = {
        span["attributes"]["conveyor.job_id"]: span for span in spans.named("conveyor.enqueue")
    }
    assert set(enqueues) == {str(steady), str(flaky)}
    recorded = spans_in(worker_spans)
    for name in ("conveyor.run", "conveyor.wait", "greet.handler"):
        assert len([span for span in recorded if span["name"] == name]) == 3, name
    for span in recorded:
        assert span["trace_id"] == order["trace_id"], f"{span['name']} is in the producer's trace"
    attempts = sorted(
        (
            span["attributes"]["conveyor.job_id"],
            span["attributes"]["conveyor.attempt"],
            span["attributes"]["conveyor.outcome"],
        )
        for span in runs()
    )
    assert attempts == sorted(
        [
            (str(steady), 1, LOG_COMPLETED),
            (str(flaky), 1, LOG_FAILED),
            (str(flaky), 2, LOG_COMPLETED),
        ]
    )
    for span in runs():
        enqueue = enqueues[span["attributes"]["conveyor.job_id"]]
        assert span["parent_id"] == enqueue["span_id"], "the run hangs under its enqueue"
        assert span["kind"] == "CONSUMER"
        assert span["attributes"]["conveyor.queue"] == "traced"
        assert span["attributes"]["conveyor.task"] == "greet"
    run_ids = {span["span_id"] for span in runs()}
    handlers = [span for span in recorded if span["name"] == "greet.handler"]
    assert {span["parent_id"] for span in handlers} == run_ids


def test_without_opentelemetry_jobs_still_run_and_nothing_is_stored(
    settings: Settings, db: psycopg.Connection[Any]
) -> None:
    """As without the `otel` extra: the packages cannot be imported at all."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.apps.without_otel"],
        env=env_for(settings),
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    report = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert report["status"] == COMPLETED
    assert report["available"] is False
    assert report["worker_traced"] is False
    assert report["modules"] == {"opentelemetry": False}, "nothing of OpenTelemetry was loaded"
    assert stored_context(db, UUID(report["job_id"])) is None


@pytest.mark.fault
async def test_a_drained_worker_exports_its_last_spans(
    app: Conveyor, procs: Processes, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """With a batching span processor, as in production, the spans of the jobs a worker
    ran reach the exporter when SIGTERM drains it: the SDK flushes as the process exits."""
    app.tasks.update(traced.app.tasks)
    job_id = app.enqueue("greet", {})
    worker_spans = tmp_path / "worker-spans.jsonl"
    procs.queuer()
    worker = procs.conveyor(
        *("worker", "--app", "tests.apps.traced:app", "--queues", "traced"),
        name="worker",
        CONVEYOR_TEST_SPANS=str(worker_spans),
        CONVEYOR_TEST_SPANS_BATCHED="1",
    )
    await wait_until(lambda: finished(db, 1), message="the job to end")
    assert spans_in(worker_spans) == [], "the batch waits for its flush"
    worker.send_signal(signal.SIGTERM)
    await wait_until(lambda: worker.poll() is not None, message="the worker to exit")
    assert worker.returncode == 0
    runs = [span for span in spans_in(worker_spans) if span["name"] == "conveyor.run"]
    assert [span["attributes"]["conveyor.job_id"] for span in runs] == [str(job_id)]
