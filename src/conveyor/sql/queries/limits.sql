-- Global rate and concurrency limits: their definitions, the limited dispatch the queuer
-- runs beside dispatch_ready, and the figures admin shows. See docs/scheduling.md, "Rate and
-- concurrency limits", for the guarantees and why each statement keeps them.

-- name: list_flow_limits
SELECT scope, rate_count, rate_period_seconds, concurrency, source, updated
FROM {schema}.flow_limits ORDER BY scope;

-- name: set_local_lock_timeout
-- For the rest of this transaction only (lock_flow_limits_table must not wait for long).
SELECT set_config('lock_timeout', %(lock_timeout)s, true) AS lock_timeout;

-- name: lock_flow_limits_table
-- A new task limit must reach every job of the task (jobs.limited), including jobs being
-- inserted right now: insert_jobs reads flow_limits, and holds that read lock until it
-- commits. Taking the table exclusively waits for those inserts, so mark_task_limited then
-- sees their rows; inserts that come later wait, then see the new limit. Bounded by the
-- lock timeout: a long transaction holding the read lock makes the change fail (and roll
-- back), not stall every enqueue.
LOCK TABLE {schema}.flow_limits IN ACCESS EXCLUSIVE MODE;

-- name: upsert_flow_limits
-- Code and configuration never overwrite an operator's runtime limit (source admin); an
-- operator's write replaces anything. Returns the scopes written, with `created` true for
-- a scope that had no row.
WITH given AS (
    SELECT * FROM jsonb_to_recordset(%(limits)s::jsonb)
        AS g(scope text, rate_count int, rate_period_seconds float8, concurrency int)
), existing AS (
    SELECT scope FROM {schema}.flow_limits WHERE scope IN (SELECT scope FROM given)
)
INSERT INTO {schema}.flow_limits AS l (scope, rate_count, rate_period_seconds, concurrency,
                                       source)
SELECT g.scope, g.rate_count, g.rate_period_seconds, g.concurrency, %(source)s FROM given g
ON CONFLICT (scope) DO UPDATE
SET rate_count = excluded.rate_count, rate_period_seconds = excluded.rate_period_seconds,
    concurrency = excluded.concurrency, source = excluded.source, updated = now()
WHERE (l.source <> {LIMIT_FROM_ADMIN} OR excluded.source = {LIMIT_FROM_ADMIN})
  AND (l.rate_count, l.rate_period_seconds, l.concurrency, l.source)
      IS DISTINCT FROM (excluded.rate_count, excluded.rate_period_seconds, excluded.concurrency,
                        excluded.source)
RETURNING l.scope AS scope, l.scope NOT IN (SELECT scope FROM existing) AS created;

-- name: mark_task_limited
-- Every job of these tasks that may still be dispatched (waiting, in flight, or dead or
-- cancelled and so open to a retry) goes through the limited dispatch from now on.
UPDATE {schema}.jobs SET limited = true
WHERE task = ANY(%(tasks)s::text[]) AND NOT limited
  AND status IN ({QUEUED}, {DISPATCHED}, {RUNNING}, {DEAD}, {CANCELLED});

-- name: delete_flow_limits
-- Each filter applies when given: the writer (`source`), the scopes named (an operator's
-- remove; code dropping the limits of its tasks that no longer declare one), and the
-- scopes under `prefix` not in `keep` (configuration no longer naming them).
DELETE FROM {schema}.flow_limits
WHERE (%(source)s::text IS NULL OR source = %(source)s)
  AND (%(scopes)s::text[] IS NULL OR scope = ANY(%(scopes)s::text[]))
  AND (%(keep)s::text[] IS NULL OR (scope LIKE %(prefix)s AND NOT scope = ANY(%(keep)s::text[])))
RETURNING scope;

-- name: lock_limited_dispatch
-- One queuer spends the budgets at a time (a transaction lock: gone at commit or rollback,
-- and it works through a transaction-mode pooler).
SELECT pg_advisory_xact_lock(%(lock)s) AS locked;

-- name: limited_groups
-- The (queue, key, task) groups that have limited jobs waiting, in active queues, found by
-- skipping from one group to the next down jobs_limited_ready_idx (one probe per group,
-- however many jobs each holds). `limit_key` is '' for a task-limited job without a key.
WITH RECURSIVE seen AS (
    (SELECT j.queue_name, coalesce(j.limit_key, '') AS limit_key, j.task
     FROM {schema}.jobs j
     WHERE j.status = {QUEUED} AND j.limited
     ORDER BY j.queue_name, coalesce(j.limit_key, ''), j.task LIMIT 1)
    UNION ALL
    SELECT n.queue_name, n.limit_key, n.task
    FROM seen CROSS JOIN LATERAL (
        SELECT j.queue_name, coalesce(j.limit_key, '') AS limit_key, j.task
        FROM {schema}.jobs j
        WHERE j.status = {QUEUED} AND j.limited
          AND (j.queue_name, coalesce(j.limit_key, ''), j.task)
              > (seen.queue_name, seen.limit_key, seen.task)
        ORDER BY j.queue_name, coalesce(j.limit_key, ''), j.task LIMIT 1
    ) n
)
SELECT s.queue_name, s.limit_key, s.task
FROM (SELECT * FROM seen LIMIT %(max_groups)s) s
JOIN {schema}.job_queues q ON q.name = s.queue_name AND q.is_active;

-- name: limit_usage
-- One snapshot of every figure the budgets need, so a job claimed meanwhile is counted
-- once: still dispatched, or already in flow_starts (its claim moves it in one statement).
-- In flight comes from the in-flight rows only (jobs_dispatched_idx, jobs_running_idx:
-- bounded by the Redis buffers and the workers' slots). A bucket counts when any part of
-- it lies in the window: over-counting by at most one bucket, never under-counting.
WITH asked AS (
    SELECT * FROM unnest(%(scopes)s::text[], %(periods)s::float8[]) AS a(scope, period)
), flight AS (
    SELECT s.scope, count(*) AS in_flight,
           count(*) FILTER (WHERE j.status = {DISPATCHED}) AS dispatched
    FROM {schema}.jobs j
    CROSS JOIN LATERAL (VALUES ({SCOPE_QUEUE} || j.queue_name), ({SCOPE_TASK} || j.task),
                               ({SCOPE_KEY} || j.limit_key)) AS s(scope)
    WHERE j.status IN ({DISPATCHED}, {RUNNING}) AND s.scope = ANY(%(scopes)s::text[])
    GROUP BY s.scope
), recent AS (
    SELECT a.scope, sum(f.starts) AS starts, min(f.bucket) AS oldest, min(a.period) AS period
    FROM asked a
    JOIN {schema}.flow_starts f
      ON f.scope = a.scope
     AND f.bucket > now() - (a.period + {START_BUCKET_SECONDS}) * interval '1 second'
    GROUP BY a.scope
)
SELECT a.scope, coalesce(fl.in_flight, 0)::int AS in_flight,
       coalesce(fl.dispatched, 0)::int AS dispatched,
       coalesce(r.starts, 0)::int AS window_starts,
       extract(epoch FROM r.oldest + (r.period + {START_BUCKET_SECONDS}) * interval '1 second'
                         - now())::float8 AS frees_in
FROM asked a LEFT JOIN flight fl ON fl.scope = a.scope LEFT JOIN recent r ON r.scope = a.scope;

-- name: limited_candidates
-- The most urgent ready jobs of each group, at most the group's budget, locked so another
-- queuer's plain dispatch or a cancel skips them; then the plain jobs of queues with a
-- queue limit (their budget is the queue's), down jobs_ready_idx with limited = false.
SELECT c.id, c.queue_name, c.task, c.limit_key, c.priority, c.run_at
FROM unnest(%(queues)s::text[], %(keys)s::text[], %(tasks)s::text[], %(limits)s::int[])
    AS g(queue_name, limit_key, task, lim)
CROSS JOIN LATERAL (
    SELECT j.id, j.queue_name, j.task, j.limit_key, j.priority, j.run_at
    FROM {schema}.jobs j
    WHERE j.status = {QUEUED} AND j.limited AND j.queue_name = g.queue_name
      AND coalesce(j.limit_key, '') = g.limit_key AND j.task = g.task AND j.run_at <= now()
    ORDER BY j.priority, j.run_at
    LIMIT g.lim
    FOR UPDATE SKIP LOCKED
) c
UNION ALL
SELECT c.id, c.queue_name, c.task, c.limit_key, c.priority, c.run_at
FROM unnest(%(plain_queues)s::text[], %(plain_limits)s::int[]) AS g(queue_name, lim)
JOIN {schema}.job_queues q ON q.name = g.queue_name AND q.is_active
CROSS JOIN LATERAL (
    SELECT j.id, j.queue_name, j.task, j.limit_key, j.priority, j.run_at
    FROM {schema}.jobs j
    WHERE j.status = {QUEUED} AND NOT j.limited AND j.queue_name = g.queue_name
      AND j.run_at <= now()
    ORDER BY j.priority, j.run_at
    LIMIT g.lim
    FOR UPDATE SKIP LOCKED
) c;

-- name: dispatch_limited
-- Mark the picked jobs dispatched, each with the rate scopes its claim must record a
-- start for (claim_jobs).
WITH p AS (
    SELECT * FROM jsonb_to_recordset(%(picks)s::jsonb) AS p(id uuid, scopes text[])
)
UPDATE {schema}.jobs j
SET status = {DISPATCHED}, dispatched_at = now(), updated = now(),
    rate_scopes = CASE WHEN cardinality(p.scopes) > 0 THEN p.scopes END
FROM p
WHERE j.id = p.id AND j.status = {QUEUED}
RETURNING j.id, j.queue_name, j.priority,
          extract(epoch FROM now() - greatest(j.created, j.run_at))::float8 AS waited;

-- name: prune_flow_starts
DELETE FROM {schema}.flow_starts
WHERE bucket < now() - (%(keep)s + {START_BUCKET_SECONDS}) * interval '1 second';

-- name: limit_waiting
-- Ready jobs held back, per scope asked for: the limited jobs (jobs_limited_ready_idx) and
-- the plain jobs of queues with a queue limit (jobs_ready_idx, limited = false).
SELECT s.scope, count(*)::int AS waiting
FROM (
    SELECT j.queue_name, j.task, j.limit_key FROM {schema}.jobs j
    WHERE j.status = {QUEUED} AND j.limited AND j.run_at <= now()
    UNION ALL
    SELECT j.queue_name, NULL, NULL FROM {schema}.jobs j
    WHERE j.status = {QUEUED} AND NOT j.limited AND j.queue_name = ANY(%(queues)s::text[])
      AND j.run_at <= now()
) w
CROSS JOIN LATERAL (VALUES ({SCOPE_QUEUE} || w.queue_name), ({SCOPE_TASK} || w.task),
                           ({SCOPE_KEY} || w.limit_key)) AS s(scope)
WHERE s.scope = ANY(%(scopes)s::text[])
GROUP BY s.scope;

-- name: in_flight_limit_keys
-- Keys with jobs dispatched or running, for admin (bounded like the in-flight set).
SELECT DISTINCT limit_key FROM {schema}.jobs
WHERE status IN ({DISPATCHED}, {RUNNING}) AND limit_key IS NOT NULL
LIMIT %(max_keys)s;
