-- Capacity figures for the scaling signal (GET /api/scaling, conveyor_desired_workers) and
-- the autoscaler's decisions on the workers page.

-- name: admin_scaling
-- Per queue: jobs waiting now (ready in PostgreSQL or buffered in Redis, as queue_depths
-- counts them), and over the last %(minutes)s complete minutes of the rollup: jobs
-- enqueued, attempts finished (completed, failed, dead) and their handler seconds. The
-- minute in progress is left out: its row is written only after it ends. Queue totals are
-- every tenant's jobs: a tenant-scoped caller gets no row, a queue-scoped one its queues.
WITH history AS (
    SELECT queue_name,
           sum(enqueued)::bigint AS enqueued,
           sum(completed + failed + dead)::bigint AS finished,
           sum(run_seconds)::float8 AS run_seconds
    FROM {schema}.metrics_minutes
    WHERE bucket >= date_trunc('minute', now()) - make_interval(mins => %(minutes)s::int)
      AND bucket < date_trunc('minute', now())
    GROUP BY queue_name
), depth AS (
    SELECT queue_name, count(*) AS waiting
    FROM {schema}.jobs
    WHERE (status = {QUEUED} AND run_at <= now()) OR status = {DISPATCHED}
    GROUP BY queue_name
)
SELECT coalesce(h.queue_name, d.queue_name) AS queue_name,
       coalesce(d.waiting, 0)::bigint AS waiting,
       coalesce(h.enqueued, 0)::bigint AS enqueued,
       coalesce(h.finished, 0)::bigint AS finished,
       coalesce(h.run_seconds, 0)::float8 AS run_seconds
FROM history h
FULL JOIN depth d ON d.queue_name = h.queue_name
WHERE %(tenants)s::text[] IS NULL
  AND (%(queues)s::text[] IS NULL
       OR coalesce(h.queue_name, d.queue_name) = ANY(%(queues)s::text[]))
ORDER BY 1;

-- name: admin_autoscale_decisions
-- The newest scaling decisions the worker supervisors wrote to the audit log.
SELECT id, at, target, result AS direction, detail->>'reason' AS reason,
       detail->>'detail' AS detail
FROM {schema}.audit_log
WHERE actor = %(actor)s AND action = %(action)s
ORDER BY id DESC
LIMIT %(limit)s;
