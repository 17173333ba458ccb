-- name: admin_queue_stats
-- One row per queue with every figure the dashboard shows, in one statement. Each part
-- reads a partial index: jobs_ready_idx (queued), jobs_dispatched_idx, jobs_running_idx,
-- jobs_waiting_idx,
-- jobs_admin_list_idx (dead, and the skip scan that finds queues without a job_queues
-- row), job_logs_finished_idx (the last hour).
-- Scoped (`tenants`, `queues`; NULL: unrestricted): only the queues in scope, and for a
-- tenant-scoped caller only the queues its tenants have jobs in (a skip scan of
-- jobs_tenant_list_idx per tenant), every figure counting only its tenants' jobs.
WITH queues AS (
    SELECT name FROM (
        SELECT name FROM {schema}.job_queues WHERE %(tenants)s::text[] IS NULL
        UNION SELECT name FROM {schema}.queue_names_with_jobs() AS name
              WHERE %(tenants)s::text[] IS NULL
        UNION SELECT {schema}.queue_names_of_tenant(t) FROM unnest(%(tenants)s::text[]) AS t
        -- One branch per status, so each reads its own partial index.
        UNION SELECT queue_name FROM {schema}.jobs WHERE status = {DISPATCHED} AND (%(tenants)s::text[] IS NULL OR tenant = ANY(%(tenants)s::text[]))
        UNION SELECT queue_name FROM {schema}.jobs WHERE status = {RUNNING} AND (%(tenants)s::text[] IS NULL OR tenant = ANY(%(tenants)s::text[]))
        UNION SELECT queue_name FROM {schema}.jobs WHERE status = {WAITING} AND (%(tenants)s::text[] IS NULL OR tenant = ANY(%(tenants)s::text[]))
    ) known (name)
    WHERE %(queues)s::text[] IS NULL OR name = ANY(%(queues)s::text[])
), ready AS (
    -- Grouped in the index's own order (queue_name, priority, run_at), so the scan feeds
    -- the aggregate without sorting or hashing, and stays index-only. min(run_at) is the
    -- oldest ready job whenever there is one: ready jobs sort before scheduled ones.
    SELECT queue_name, priority, count(*) AS total,
           count(*) FILTER (WHERE run_at <= now()) AS ready, min(run_at) AS since
    FROM {schema}.jobs WHERE status = {QUEUED} AND (%(tenants)s::text[] IS NULL OR tenant = ANY(%(tenants)s::text[]))
    GROUP BY queue_name, priority
), sent AS (
    SELECT queue_name, priority, count(*) AS total, count(*) AS ready, min(run_at) AS since
    FROM {schema}.jobs WHERE status = {DISPATCHED} AND (%(tenants)s::text[] IS NULL OR tenant = ANY(%(tenants)s::text[]))
    GROUP BY queue_name, priority
), waiting AS (
    -- Ready (queued, due) and dispatched jobs are both waiting for a worker.
    SELECT queue_name,
           sum(ready) FILTER (WHERE priority <= {HIGH_PRIORITY_MAX})::bigint AS high,
           sum(ready) FILTER (WHERE priority > {HIGH_PRIORITY_MAX}
                              AND priority <= {NORMAL_PRIORITY_MAX})::bigint AS normal,
           sum(ready) FILTER (WHERE priority > {NORMAL_PRIORITY_MAX})::bigint AS low,
           min(since) FILTER (WHERE ready > 0 AND priority <= {HIGH_PRIORITY_MAX}) AS high_since,
           min(since) FILTER (WHERE ready > 0 AND priority > {HIGH_PRIORITY_MAX}
                                    AND priority <= {NORMAL_PRIORITY_MAX}) AS normal_since,
           min(since) FILTER (WHERE ready > 0 AND priority > {NORMAL_PRIORITY_MAX}) AS low_since,
           sum(total - ready) FILTER (WHERE NOT in_redis)::bigint AS scheduled,
           sum(total) FILTER (WHERE in_redis)::bigint AS dispatched
    FROM (SELECT *, false AS in_redis FROM ready
          UNION ALL
          SELECT *, true FROM sent) w
    GROUP BY queue_name
), running AS (
    SELECT queue_name, count(*) AS running
    FROM {schema}.jobs WHERE status = {RUNNING} AND (%(tenants)s::text[] IS NULL OR tenant = ANY(%(tenants)s::text[]))
    GROUP BY queue_name
), recent AS (
    SELECT queue_name,
           count(*) FILTER (WHERE status = {LOG_COMPLETED}) AS completed_last_hour,
           count(*) FILTER (WHERE status IN ({LOG_FAILED}, {LOG_DEAD}, {LOG_LOST})) AS failed_last_hour,
           count(*) FILTER (WHERE status = {LOG_COMPLETED}
                                  AND finished > now() - interval '5 minutes') AS completed_5m
    FROM {schema}.job_logs l
    WHERE finished > now() - interval '1 hour'
      -- job_logs has no tenant: a tenant-scoped caller's rows are found through the job.
      AND (%(tenants)s::text[] IS NULL
           OR EXISTS (SELECT 1 FROM {schema}.jobs j
                      WHERE j.id = l.job_id AND j.tenant = ANY(%(tenants)s::text[])))
    GROUP BY queue_name
), live AS (
    SELECT q AS queue_name, count(*) AS live_workers
    FROM {schema}.workers w CROSS JOIN unnest(w.queues) AS q
    WHERE w.stopped IS NULL
      AND w.last_heartbeat >= now() - %(dead_after)s * interval '1 second'
    GROUP BY q
)
SELECT q.name,
       coalesce(NOT jq.is_active, false) AS paused,
       jq.paused_at,
       coalesce(w.high, 0) AS waiting_high,
       coalesce(w.normal, 0) AS waiting_normal,
       coalesce(w.low, 0) AS waiting_low,
       extract(epoch FROM now() - w.high_since)::float8 AS oldest_high,
       extract(epoch FROM now() - w.normal_since)::float8 AS oldest_normal,
       extract(epoch FROM now() - w.low_since)::float8 AS oldest_low,
       coalesce(w.scheduled, 0) AS scheduled,
       coalesce(w.dispatched, 0) AS dispatched,
       coalesce(r.running, 0) AS running,
       coalesce(c.completed_last_hour, 0) AS completed_last_hour,
       coalesce(c.failed_last_hour, 0) AS failed_last_hour,
       coalesce(c.completed_5m, 0) AS completed_5m,
       d.dead,
       e.expired,
       p.awaiting_parents,
       coalesce(l.live_workers, 0) AS live_workers
FROM queues q
LEFT JOIN {schema}.job_queues jq ON jq.name = q.name
LEFT JOIN waiting w ON w.queue_name = q.name
LEFT JOIN running r ON r.queue_name = q.name
LEFT JOIN recent c ON c.queue_name = q.name
LEFT JOIN live l ON l.queue_name = q.name
CROSS JOIN LATERAL (
    SELECT count(*) AS dead FROM {schema}.jobs j
    WHERE j.status IN ({QUEUED}, {COMPLETED}, {DEAD}, {CANCELLED}, {EXPIRED})
      AND j.queue_name = q.name AND j.status = {DEAD}
      AND (%(tenants)s::text[] IS NULL OR j.tenant = ANY(%(tenants)s::text[]))
) d
CROSS JOIN LATERAL (
    -- jobs_admin_list_idx too: expired jobs are at rest (migration 014).
    SELECT count(*) AS expired FROM {schema}.jobs j
    WHERE j.status IN ({QUEUED}, {COMPLETED}, {DEAD}, {CANCELLED}, {EXPIRED})
      AND j.queue_name = q.name AND j.status = {EXPIRED}
      AND (%(tenants)s::text[] IS NULL OR j.tenant = ANY(%(tenants)s::text[]))
) e
CROSS JOIN LATERAL (
    -- Jobs waiting on their parents (docs/workflows.md), from jobs_waiting_idx.
    SELECT count(*) AS awaiting_parents FROM {schema}.jobs j
    WHERE j.status = {WAITING} AND j.queue_name = q.name
      AND (%(tenants)s::text[] IS NULL OR j.tenant = ANY(%(tenants)s::text[]))
) p
ORDER BY q.name;

-- name: admin_stats_summary
-- The figures that are not per queue; sent in the same pipeline as admin_queue_stats.
-- Workers as admin_workers shows them to the caller; p95 over the caller's jobs.
SELECT now() AS now,
       count(*) AS workers_total,
       count(*) FILTER (WHERE alive) AS workers_alive,
       coalesce(sum(concurrency) FILTER (WHERE alive), 0) AS capacity,
       coalesce(sum(jobs_in_flight) FILTER (WHERE alive), 0) AS busy,
       (SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM l.duration))
        FROM {schema}.job_logs l
        WHERE l.finished > now() - interval '5 minutes' AND l.status = {LOG_COMPLETED}
          AND l.duration IS NOT NULL
          AND (%(queues)s::text[] IS NULL OR l.queue_name = ANY(%(queues)s::text[]))
          AND (%(tenants)s::text[] IS NULL
               OR EXISTS (SELECT 1 FROM {schema}.jobs j
                          WHERE j.id = l.job_id AND j.tenant = ANY(%(tenants)s::text[]))))::float8
       AS p95_duration
FROM (
    SELECT concurrency, jobs_in_flight,
           stopped IS NULL
           AND last_heartbeat >= now() - %(dead_after)s * interval '1 second' AS alive
    FROM {schema}.workers
    -- Workers serve queues, not tenants: a tenant-scoped caller sees none; a queue-scoped
    -- one sees those serving a queue in its scope.
    WHERE %(tenants)s::text[] IS NULL
      AND (%(queues)s::text[] IS NULL OR queues && %(queues)s::text[])
) w;

-- name: admin_workers
-- For a queue-scoped caller, each worker's queue list is cut to the queues in scope.
SELECT id, host, pid,
       CASE WHEN %(queues)s::text[] IS NULL THEN queues
            ELSE ARRAY(SELECT q FROM unnest(queues) AS q WHERE q = ANY(%(queues)s::text[]))
       END AS queues,
       concurrency, started, last_heartbeat, stopped, jobs_in_flight,
       extract(epoch FROM now() - last_heartbeat)::float8 AS heartbeat_age_seconds,
       (stopped IS NULL AND last_heartbeat >= now() - %(dead_after)s * interval '1 second')
           AS alive,
       -- Health from the worker's heartbeats. Uptime ends at a stopped worker's goodbye,
       -- and at a silent one's last heartbeat: a crashed worker is not "up" for days.
       extract(epoch FROM CASE WHEN stopped IS NOT NULL THEN stopped
                               WHEN last_heartbeat >= now() - %(dead_after)s * interval '1 second'
                               THEN now()
                               ELSE last_heartbeat END - started)::float8 AS uptime_seconds,
       rss_bytes, jobs_processed, jobs_failed, busy_seconds,
       CASE WHEN jobs_processed > 0 THEN busy_seconds / jobs_processed END
           AS avg_processing_seconds,
       postgres_only, breakers_open
FROM {schema}.workers
WHERE %(tenants)s::text[] IS NULL
  AND (%(queues)s::text[] IS NULL OR queues && %(queues)s::text[])
ORDER BY alive DESC, started DESC, id;

-- name: admin_queue_exists
-- A queue is known when it has a job_queues row or any job (probes, not scans); to a
-- tenant-scoped caller, only when one of its tenants has a job in it.
SELECT CASE WHEN %(tenants)s::text[] IS NOT NULL THEN
    EXISTS (SELECT 1 FROM {schema}.jobs
            WHERE tenant = ANY(%(tenants)s::text[]) AND queue_name = %(queue)s)
ELSE EXISTS (SELECT 1 FROM {schema}.job_queues WHERE name = %(queue)s)
    OR EXISTS (SELECT 1 FROM {schema}.jobs
               WHERE status IN ({QUEUED}, {COMPLETED}, {DEAD}, {CANCELLED}, {EXPIRED})
                 AND queue_name = %(queue)s)
    OR EXISTS (SELECT 1 FROM {schema}.jobs
               WHERE status = {DISPATCHED} AND queue_name = %(queue)s)
    OR EXISTS (SELECT 1 FROM {schema}.jobs
               WHERE status = {RUNNING} AND queue_name = %(queue)s)
    OR EXISTS (SELECT 1 FROM {schema}.jobs
               WHERE status = {WAITING} AND queue_name = %(queue)s) END AS known;

-- name: admin_ping
SELECT 1;
