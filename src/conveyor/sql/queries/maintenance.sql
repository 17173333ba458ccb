-- name: find_lost_jobs
-- Running jobs whose lease ran out, or whose worker stopped beating or said it stopped.
SELECT j.id, j.lease_token
FROM {schema}.jobs j
LEFT JOIN {schema}.workers w ON w.id = j.worker_id
WHERE j.status = {RUNNING}
  AND (j.lease_expires_at < now()
       OR w.id IS NULL
       OR w.stopped IS NOT NULL
       OR w.last_heartbeat < now() - %(dead_after)s * interval '1 second')
ORDER BY j.lease_expires_at
LIMIT %(limit)s;

-- name: find_worker_jobs
SELECT id, lease_token FROM {schema}.jobs WHERE status = {RUNNING} AND worker_id = %(worker_id)s;

-- name: rescue_jobs
-- Give lost attempts back to the queue, or to the dead-letter queue when they were the
-- last. Guarded by the fencing token and the status: a job completed or claimed again
-- since it was chosen is left alone (the rescuer-versus-completion race).
WITH lost AS (
    UPDATE {schema}.jobs j
    SET status = CASE WHEN j.attempt >= j.max_attempts THEN {DEAD} ELSE {QUEUED} END,
        -- `stagger` spaces the jobs of one crash apart (see Supervisor.rescue).
        run_at = now() + (c.position - 1) * %(stagger)s * interval '1 second',
        failed = now(), last_error = %(reason)s,
        lease_expires_at = NULL, dispatched_at = NULL, updated = now()
    FROM unnest(%(ids)s::uuid[], %(tokens)s::bigint[]) WITH ORDINALITY AS c(id, token, position)
    WHERE j.id = c.id AND j.lease_token = c.token AND j.status = {RUNNING}
    RETURNING j.id, j.queue_name, j.task, j.status, j.attempt, j.worker_id, j.started
), logged AS (
    INSERT INTO {schema}.job_logs (job_id, queue_name, task, status, attempt_number, log_message,
                                   worker_id, started, finished, duration)
    SELECT id, queue_name, task, CASE WHEN status = {DEAD} THEN {LOG_DEAD} ELSE {LOG_LOST} END,
           attempt, %(reason)s, worker_id, started, now(), now() - started
    FROM lost
)
SELECT id, queue_name, task, status, attempt, worker_id FROM lost;

-- name: dispatched_before
SELECT id, queue_name FROM {schema}.jobs
WHERE status = {DISPATCHED} AND dispatched_at < now() - %(grace)s * interval '1 second';

-- name: prune_finished_jobs
WITH doomed AS (
    SELECT id FROM {schema}.jobs
    WHERE (status IN ({COMPLETED}, {CANCELLED}, {EXPIRED})
           AND updated < now() - %(retention)s * interval '1 second')
       OR (status = {DEAD} AND updated < now() - %(dead_retention)s * interval '1 second')
    LIMIT %(limit)s
)
DELETE FROM {schema}.jobs j USING doomed WHERE j.id = doomed.id
RETURNING j.id;

-- name: prune_job_logs
WITH doomed AS (
    SELECT l.id FROM {schema}.job_logs l
    WHERE l.finished < now() - %(retention)s * interval '1 second'
      AND NOT EXISTS (SELECT 1 FROM {schema}.jobs j WHERE j.id = l.job_id)
    LIMIT %(limit)s
)
DELETE FROM {schema}.job_logs l USING doomed WHERE l.id = doomed.id
RETURNING l.id;

-- name: prune_workers
DELETE FROM {schema}.workers
WHERE last_heartbeat < now() - %(retention)s * interval '1 second'
  AND NOT EXISTS (SELECT 1 FROM {schema}.jobs j WHERE j.worker_id = workers.id AND j.status = {RUNNING});

-- name: queue_depths
-- Waiting jobs (ready in PostgreSQL or buffered in Redis) per queue and lane, and how long
-- the oldest has been ready: the queue gauges, read by every process that is scraped.
-- Grouped by (queue_name, priority) first, in jobs_ready_idx's own order, so the queued
-- part is an index-only scan that never visits the heap (three times faster than a
-- bitmap scan of jobs_due_idx over 100,000 waiting jobs); dispatched rows are few
-- (bounded by the Redis buffer) and read through jobs_dispatched_idx.
WITH ready AS (
    SELECT queue_name, priority, count(*) FILTER (WHERE run_at <= now()) AS waiting,
           min(run_at) FILTER (WHERE run_at <= now()) AS since
    FROM {schema}.jobs WHERE status = {QUEUED}
    GROUP BY queue_name, priority
), sent AS (
    SELECT queue_name, priority, count(*) AS waiting, min(run_at) AS since
    FROM {schema}.jobs WHERE status = {DISPATCHED}
    GROUP BY queue_name, priority
)
SELECT queue_name,
       CASE WHEN priority <= {HIGH_PRIORITY_MAX} THEN {LANE_HIGH} WHEN priority <= {NORMAL_PRIORITY_MAX} THEN {LANE_NORMAL} ELSE {LANE_LOW} END
           AS lane,
       sum(waiting)::bigint AS waiting,
       extract(epoch FROM now() - min(since))::float8 AS oldest_age
FROM (SELECT queue_name, priority, waiting, since FROM ready
      UNION ALL
      SELECT queue_name, priority, waiting, since FROM sent) w
GROUP BY 1, 2
HAVING sum(waiting) > 0;

-- name: expire_queued_jobs
-- The Expirer: queued jobs past their deadline end expired without running, oldest
-- deadline first, in bounded batches (down jobs_expiry_idx). Guarded by the status it
-- leaves; a row the queuer is dispatching right now is skipped and expires at its claim.
WITH due AS (
    SELECT id FROM {schema}.jobs
    WHERE status = {QUEUED} AND expires_at IS NOT NULL AND expires_at <= now()
    ORDER BY expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), expired AS (
    UPDATE {schema}.jobs j
    SET status = {EXPIRED}, updated = now()
    FROM due
    WHERE j.id = due.id AND j.status = {QUEUED}
    RETURNING j.id, j.queue_name, j.task, j.attempt
), logged AS (
    INSERT INTO {schema}.job_logs (job_id, queue_name, task, status, attempt_number, log_message)
    SELECT id, queue_name, task, {LOG_EXPIRED}, attempt, 'not started before its deadline'
    FROM expired
)
SELECT id, queue_name, task FROM expired;
