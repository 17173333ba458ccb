-- OpenTelemetry: the W3C trace context (traceparent, tracestate) of the code that enqueued
-- a job, so the worker's spans join the producer's trace. NULL when tracing is off or the
-- opentelemetry packages are not installed: a nullable column without a default is added
-- without rewriting the table, and a NULL costs a job nothing but a bit in its null map.
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS trace_context jsonb;
