"""A traced app for the cross-process tracing tests.

Worker subprocesses import it as `tests.apps.traced:app` with CONVEYOR_TEST_SPANS naming a
file: at import it configures the global tracer provider, as an application would, with
an exporter that appends finished spans to that file as JSON lines (an in-memory
exporter would die with the worker process): each as it ends, or, with
CONVEYOR_TEST_SPANS_BATCHED set, all at the provider's flush when the process exits.
The test process imports it only for its tasks, without the variable, so its own global
provider stays unset.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from conveyor import Conveyor, JobContext, RetryPolicy


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """The fields the tests compare, ids as lowercase hex like a traceparent's."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_id": None if span.parent is None else format(span.parent.span_id, "016x"),
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "events": [
            {"name": event.name, "attributes": dict(event.attributes or {})}
            for event in span.events
        ],
        "start": span.start_time,
        "end": span.end_time,
    }


class JsonLinesExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()  # spans end on the event loop and in handler threads

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(span)) + "\n" for span in spans)
        with self.lock, open(self.path, "a", encoding="utf-8") as file:
            file.write(lines)
        return SpanExportResult.SUCCESS


_spans_file = os.environ.get("CONVEYOR_TEST_SPANS")
if _spans_file:
    exporter = JsonLinesExporter(_spans_file)
    provider = TracerProvider()
    if os.environ.get("CONVEYOR_TEST_SPANS_BATCHED"):
        # As in production: spans wait in memory, exported only at the flush on exit.
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=600_000))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

app = Conveyor()


@app.task(name="greet", queue="traced", max_attempts=3, retry=RetryPolicy(base=0.05, cap=0.2))
def greet(payload: dict[str, Any], ctx: JobContext) -> None:
    # A span of the handler's own: it must nest under the worker's run span.
    with trace.get_tracer("tests.apps.traced").start_as_current_span("greet.handler"):
        if payload.get("fail_first") and ctx.attempt == 1:
            raise RuntimeError("planned failure on the first attempt")
