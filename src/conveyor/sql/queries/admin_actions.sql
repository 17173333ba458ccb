-- Operator actions. Each runs in one transaction together with its audit_log row, and
-- each change is a single guarded statement: the WHERE clause restates the states the
-- action applies to, so a concurrent worker, queuer or second operator changes the
-- outcome only by making the guard fail (nothing happens twice). Every statement that
-- picks jobs also takes the caller's scope (`tenants`, `queues`; NULL: unrestricted):
-- a job outside it is neither changed nor reported as existing.

-- name: admin_lock_job
SELECT id, queue_name, task, status, attempt, max_attempts, run_at, cancel_requested, tenant
FROM {schema}.jobs
WHERE id = %(id)s AND (%(tenants)s::text[] IS NULL OR tenant = ANY(%(tenants)s::text[]))
  AND (%(queues)s::text[] IS NULL OR queue_name = ANY(%(queues)s::text[]))
FOR UPDATE;

-- name: admin_retry_jobs
-- Run again now with a fresh attempt counter: dead, cancelled and completed jobs, and
-- queued jobs waiting out a retry backoff. The lease token is left alone (fencing must
-- only ever grow). A second operator retrying the same job at the same time waits for
-- the row lock, then finds it queued with attempt 0 and skips it.
WITH target AS (
    SELECT id, status, attempt FROM {schema}.jobs
    WHERE id = ANY(%(ids)s::uuid[])
      AND (status IN ({DEAD}, {CANCELLED}, {COMPLETED}) OR (status = {QUEUED} AND attempt > 0))
      AND (%(tenants)s::text[] IS NULL OR tenant = ANY(%(tenants)s::text[]))
      AND (%(queues)s::text[] IS NULL OR queue_name = ANY(%(queues)s::text[]))
    FOR UPDATE
), retried AS (
    UPDATE {schema}.jobs j
    SET status = {QUEUED}, attempt = 0, run_at = now(), dispatched_at = NULL, started = NULL,
        completed = NULL, lease_expires_at = NULL, worker_id = NULL, cancel_requested = false,
        -- A completed job run again must not show its earlier run's result meanwhile,
        -- nor its handler's progress: the job starts afresh (docs/progress.md).
        result = NULL, result_error = NULL, progress = NULL, progress_message = NULL,
        progress_at = NULL, updated = now()
    FROM target t
    WHERE j.id = t.id
      AND (j.status IN ({DEAD}, {CANCELLED}, {COMPLETED}) OR (j.status = {QUEUED} AND j.attempt > 0))
    RETURNING j.id, j.queue_name, j.task, j.tenant, t.status AS previous,
              t.attempt AS previous_attempt
), logged AS (
    INSERT INTO {schema}.job_logs (job_id, queue_name, task, status, attempt_number, log_message)
    SELECT id, queue_name, task, {LOG_RETRIED}, previous_attempt, %(message)s FROM retried
)
SELECT id, queue_name, tenant, previous FROM retried;

-- name: admin_retry_dead
-- Replay the dead-letter queue (optionally one queue, one task, or given ids). Exactly
-- once under concurrency: `status = {DEAD}` is rechecked on the locked row, so of two
-- replays racing for a job only the first turns it into a new runnable attempt.
WITH target AS (
    SELECT id FROM {schema}.jobs
    WHERE status IN ({QUEUED}, {COMPLETED}, {DEAD}, {CANCELLED}, {EXPIRED}) AND status = {DEAD}
      AND (%(queue)s::text IS NULL OR queue_name = %(queue)s)
      AND (%(task)s::text IS NULL OR task = %(task)s)
      AND (%(ids)s::uuid[] IS NULL OR id = ANY(%(ids)s::uuid[]))
      AND (%(tenants)s::text[] IS NULL OR tenant = ANY(%(tenants)s::text[]))
      AND (%(queues)s::text[] IS NULL OR queue_name = ANY(%(queues)s::text[]))
    FOR UPDATE
), retried AS (
    UPDATE {schema}.jobs j
    SET status = {QUEUED}, attempt = 0, run_at = now(), dispatched_at = NULL, started = NULL,
        completed = NULL, lease_expires_at = NULL, worker_id = NULL, cancel_requested = false,
        progress = NULL, progress_message = NULL, progress_at = NULL, updated = now()
    FROM target t
    WHERE j.id = t.id AND j.status = {DEAD}
    RETURNING j.id, j.queue_name, j.task, j.tenant, j.attempt AS previous_attempt
), logged AS (
    INSERT INTO {schema}.job_logs (job_id, queue_name, task, status, attempt_number, log_message)
    SELECT id, queue_name, task, {LOG_RETRIED}, previous_attempt, %(message)s FROM retried
)
SELECT count(*) AS count,
       coalesce((array_agg(id ORDER BY id))[1:%(sample)s], '{}') AS sample,
       coalesce(array_agg(DISTINCT tenant), '{}') AS tenants,
       coalesce(array_agg(DISTINCT queue_name), '{}') AS queues
FROM retried;

-- name: admin_dead_preview
-- What a replay or purge of dead jobs would touch (dry runs); changes nothing.
SELECT count(*) AS count,
       coalesce((array_agg(id ORDER BY id))[1:%(sample)s], '{}') AS sample,
       coalesce(array_agg(DISTINCT tenant), '{}') AS tenants,
       coalesce(array_agg(DISTINCT queue_name), '{}') AS queues
FROM {schema}.jobs
WHERE status IN ({QUEUED}, {COMPLETED}, {DEAD}, {CANCELLED}, {EXPIRED}) AND status = {DEAD}
  AND (%(queue)s::text IS NULL OR queue_name = %(queue)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(ids)s::uuid[] IS NULL OR id = ANY(%(ids)s::uuid[]))
  AND (%(tenants)s::text[] IS NULL OR tenant = ANY(%(tenants)s::text[]))
  AND (%(queues)s::text[] IS NULL OR queue_name = ANY(%(queues)s::text[]));

-- name: admin_purge_dead
WITH gone AS (
    DELETE FROM {schema}.jobs
    WHERE status IN ({QUEUED}, {COMPLETED}, {DEAD}, {CANCELLED}, {EXPIRED}) AND status = {DEAD}
      AND (%(queue)s::text IS NULL OR queue_name = %(queue)s)
      AND (%(tenants)s::text[] IS NULL OR tenant = ANY(%(tenants)s::text[]))
      AND (%(queues)s::text[] IS NULL OR queue_name = ANY(%(queues)s::text[]))
    RETURNING id, tenant, queue_name
)
SELECT count(*) AS count,
       coalesce((array_agg(id ORDER BY id))[1:%(sample)s], '{}') AS sample,
       coalesce(array_agg(DISTINCT tenant), '{}') AS tenants,
       coalesce(array_agg(DISTINCT queue_name), '{}') AS queues
FROM gone;

-- name: admin_prune_preview
-- What prune_finished_jobs (same conditions) would delete now with these retentions: the
-- dry run of a shorter maintenance.retention or dead_retention. Changes nothing.
SELECT count(*) FILTER (WHERE status IN ({COMPLETED}, {CANCELLED}, {EXPIRED})) AS finished,
       count(*) FILTER (WHERE status = {DEAD}) AS dead
FROM {schema}.jobs
WHERE (status IN ({COMPLETED}, {CANCELLED}, {EXPIRED}) AND updated < now() - %(retention)s * interval '1 second')
   OR (status = {DEAD} AND updated < now() - %(dead_retention)s * interval '1 second');

-- name: admin_delete_jobs
-- Any job that is not running; a running one must be cancelled first (its worker owns
-- it). A claim racing the delete either wins (the row is running: skipped) or loses
-- (the row is gone: the worker drops the popped id). Dead jobs go only with
-- include_dead: deleting one is a dead-letter purge, which needs the admin role.
DELETE FROM {schema}.jobs
WHERE id = ANY(%(ids)s::uuid[]) AND status <> {RUNNING}
  AND (%(include_dead)s OR status <> {DEAD})
  AND (%(tenants)s::text[] IS NULL OR tenant = ANY(%(tenants)s::text[]))
  AND (%(queues)s::text[] IS NULL OR queue_name = ANY(%(queues)s::text[]))
RETURNING id, queue_name, tenant, status AS previous;

-- name: admin_lock_queue
SELECT name, is_active, paused_at FROM {schema}.job_queues WHERE name = %(queue)s
FOR UPDATE;

-- name: admin_pause_queue
-- Stop the queuer dispatching (is_active) and take back what is already dispatched;
-- claim_jobs refuses jobs of an inactive queue, so ids still in Redis never run.
WITH paused AS (
    INSERT INTO {schema}.job_queues AS q (name, is_active, paused_at)
    VALUES (%(queue)s, false, now())
    ON CONFLICT (name) DO UPDATE
    SET is_active = false, paused_at = coalesce(q.paused_at, now()), updated = now()
    RETURNING name
)
UPDATE {schema}.jobs SET status = {QUEUED}, dispatched_at = NULL, updated = now()
WHERE status = {DISPATCHED} AND queue_name = (SELECT name FROM paused);

-- name: admin_resume_queue
-- The notification (sent on commit) wakes the queuer at once.
WITH resumed AS (
    UPDATE {schema}.job_queues
    SET is_active = true, paused_at = NULL, updated = now()
    WHERE name = %(queue)s
    RETURNING name
)
SELECT (SELECT count(*) FROM resumed) AS resumed, pg_notify(%(channel)s, '') IS NULL AS notified;

-- name: admin_insert_audit
INSERT INTO {schema}.audit_log (actor, action, target, detail, result, tenants, queues)
VALUES (%(actor)s, %(action)s, %(target)s, %(detail)s, %(result)s, %(tenants)s::text[],
        %(queues)s::text[])
RETURNING id;

-- name: admin_job_payload
-- The stored payload of a job the caller has locked (admin_lock_job), for an edited replay
-- to compare against and to record in the audit log.
SELECT payload AS payload FROM {schema}.jobs WHERE id = %(id)s;

-- name: admin_replay_edited
-- Replay one dead job with a new payload, attempts reset as admin_retry_dead does. Guarded
-- by `status = {DEAD}` on the locked row: of two edits racing, the second finds it queued
-- and changes nothing.
WITH target AS (
    SELECT id, attempt FROM {schema}.jobs
    WHERE id = %(id)s AND status = {DEAD}
      AND (%(tenants)s::text[] IS NULL OR tenant = ANY(%(tenants)s::text[]))
      AND (%(queues)s::text[] IS NULL OR queue_name = ANY(%(queues)s::text[]))
    FOR UPDATE
), replayed AS (
    UPDATE {schema}.jobs j
    SET status = {QUEUED}, attempt = 0, payload = %(payload)s::jsonb, run_at = now(),
        dispatched_at = NULL, started = NULL, completed = NULL, lease_expires_at = NULL,
        worker_id = NULL, cancel_requested = false, progress = NULL, progress_message = NULL,
        progress_at = NULL, updated = now()
    FROM target t
    WHERE j.id = t.id AND j.status = {DEAD}
    RETURNING j.id, j.queue_name, j.task, j.tenant, t.attempt AS previous_attempt
), logged AS (
    INSERT INTO {schema}.job_logs (job_id, queue_name, task, status, attempt_number, log_message)
    SELECT id, queue_name, task, {LOG_RETRIED}, previous_attempt, %(message)s FROM replayed
)
SELECT id AS id, queue_name AS queue_name, tenant AS tenant, {DEAD} AS previous
FROM replayed;
