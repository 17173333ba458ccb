"""The `tracing` section: OpenTelemetry spans for enqueue, wait and run.

Tracing needs the `otel` extra (opentelemetry-api and -sdk) and a tracer provider that the
application configures; without either, Conveyor records nothing and stores nothing. This
switch turns it off even when both are there (for a process whose own instrumentation
should not see Conveyor's spans, or to shed the few microseconds a span costs).
"""

from __future__ import annotations

from conveyor.config.base import _Section


class TracingSettings(_Section):
    enabled: bool = True
