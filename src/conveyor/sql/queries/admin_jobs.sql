-- name: admin_list_jobs
-- One keyset page of jobs, newest first by (created, id). Rows at rest are read from
-- jobs_admin_list_idx, one index range per (queue, status) pair, each stopping after
-- `limit` rows; dispatched, running and waiting jobs come from their own indexes.
-- The age bounds and the cursor are all conditions on (created, id), so they narrow the
-- index ranges. Without a queue, the queues are found with a skip scan of the same index.
-- The caller's scope (`tenants`, `queues`; NULL: unrestricted) filters every branch; a
-- tenant-scoped page reads jobs_tenant_list_idx, one range per (tenant, queue, status).
-- Statements here run unprepared: `%(tenants)s IS NULL` folds away with the actual value.
WITH queues AS (
    SELECT name FROM {schema}.queue_names_with_jobs() AS name
    WHERE (%(queue)s::text IS NULL OR name = %(queue)s)
      AND (%(queues)s::text[] IS NULL OR name = ANY(%(queues)s::text[]))
), ranges AS (
    -- Scoped by tenant, one range per tenant too, so that each is an equality prefix of
    -- jobs_tenant_list_idx and stops after `limit` rows (`tenant = ANY` would sort them all).
    SELECT q.name, s.status, t.tenant
    FROM queues q CROSS JOIN unnest(%(rest_statuses)s::text[]) AS s(status)
    LEFT JOIN unnest(%(tenants)s::text[]) AS t(tenant) ON true
), at_rest AS (
    SELECT page.*
    FROM ranges r CROSS JOIN LATERAL (
        SELECT j.id, j.queue_name, j.task, j.status, j.priority, j.attempt, j.max_attempts,
               j.run_at, j.dispatched_at, j.started, j.completed, j.failed, j.worker_id,
               left(j.last_error, 500) AS last_error, j.cancel_requested, j.created, j.updated,
               j.tenant, j.progress, j.progress_message, j.progress_at
        FROM {schema}.jobs j
        WHERE j.status IN ({QUEUED}, {COMPLETED}, {DEAD}, {CANCELLED}, {EXPIRED})
          AND j.queue_name = r.name AND j.status = r.status
          AND (%(tenants)s::text[] IS NULL OR j.tenant = r.tenant)
          AND (j.created, j.id) < (%(before_created)s::timestamptz, %(before_id)s::uuid)
          AND j.created <= coalesce(now() - %(min_age)s::float8 * interval '1 second', 'infinity')
          AND j.created >= coalesce(now() - %(max_age)s::float8 * interval '1 second', '-infinity')
          AND j.priority BETWEEN %(min_priority)s AND %(max_priority)s
          AND (%(retry)s::boolean IS NULL OR j.status <> {QUEUED} OR (j.attempt > 0) = %(retry)s)
          AND (%(text)s::text IS NULL OR j.payload::text ILIKE %(text)s)
        ORDER BY j.created DESC, j.id DESC
        LIMIT %(limit)s
    ) page
), in_flight AS (
    SELECT j.id, j.queue_name, j.task, j.status, j.priority, j.attempt, j.max_attempts,
           j.run_at, j.dispatched_at, j.started, j.completed, j.failed, j.worker_id,
           left(j.last_error, 500) AS last_error, j.cancel_requested, j.created, j.updated,
           j.tenant, j.progress, j.progress_message, j.progress_at
    FROM (
        SELECT * FROM {schema}.jobs WHERE status = {DISPATCHED} AND {DISPATCHED} = ANY(%(live_statuses)s::text[])
        UNION ALL
        SELECT * FROM {schema}.jobs WHERE status = {RUNNING} AND {RUNNING} = ANY(%(live_statuses)s::text[])
        UNION ALL
        -- Jobs waiting on their parents (docs/workflows.md), from jobs_waiting_idx.
        SELECT * FROM {schema}.jobs WHERE status = {WAITING} AND {WAITING} = ANY(%(live_statuses)s::text[])
    ) j
    WHERE (%(queue)s::text IS NULL OR j.queue_name = %(queue)s)
      AND (%(tenants)s::text[] IS NULL OR j.tenant = ANY(%(tenants)s::text[]))
      AND (%(queues)s::text[] IS NULL OR j.queue_name = ANY(%(queues)s::text[]))
      AND j.priority BETWEEN %(min_priority)s AND %(max_priority)s
      AND (j.created, j.id) < (%(before_created)s::timestamptz, %(before_id)s::uuid)
      AND j.created <= coalesce(now() - %(min_age)s::float8 * interval '1 second', 'infinity')
      AND j.created >= coalesce(now() - %(max_age)s::float8 * interval '1 second', '-infinity')
      AND (%(text)s::text IS NULL OR j.payload::text ILIKE %(text)s)
    ORDER BY j.created DESC, j.id DESC
    LIMIT %(limit)s
)
SELECT * FROM (SELECT * FROM at_rest UNION ALL SELECT * FROM in_flight) page
ORDER BY created DESC, id DESC
LIMIT %(limit)s;

-- name: admin_search_jobs
-- One keyset page of the jobs that carry every given tag (`tags`) and hold every given
-- meta pair (`meta`, a JSON object), newest first, with the filters of admin_list_jobs.
-- Only called with tags or meta: the containment reads jobs_tags_idx or jobs_meta_idx
-- (migration 021; `@>` is strict, so the planner proves their `IS NOT NULL` predicates),
-- and the other filters apply to the jobs found, not to a scan of every payload.
-- Statements here run unprepared: `%(tags)s IS NULL` folds away with the actual value.
SELECT j.id, j.queue_name, j.task, j.status, j.priority, j.attempt, j.max_attempts,
       j.run_at, j.dispatched_at, j.started, j.completed, j.failed, j.worker_id,
       left(j.last_error, 500) AS last_error, j.cancel_requested, j.created, j.updated,
       j.tenant, j.progress, j.progress_message, j.progress_at
FROM {schema}.jobs j
WHERE (%(tags)s::text[] IS NULL OR j.tags @> %(tags)s::text[])
  AND (%(meta)s::jsonb IS NULL OR j.meta @> %(meta)s::jsonb)
  AND j.status = ANY(%(statuses)s::text[])
  AND (%(queue)s::text IS NULL OR j.queue_name = %(queue)s)
  AND (%(tenants)s::text[] IS NULL OR j.tenant = ANY(%(tenants)s::text[]))
  AND (%(queues)s::text[] IS NULL OR j.queue_name = ANY(%(queues)s::text[]))
  AND (j.created, j.id) < (%(before_created)s::timestamptz, %(before_id)s::uuid)
  AND j.created <= coalesce(now() - %(min_age)s::float8 * interval '1 second', 'infinity')
  AND j.created >= coalesce(now() - %(max_age)s::float8 * interval '1 second', '-infinity')
  AND j.priority BETWEEN %(min_priority)s AND %(max_priority)s
  AND (%(retry)s::boolean IS NULL OR j.status <> {QUEUED} OR (j.attempt > 0) = %(retry)s)
  AND (%(text)s::text IS NULL OR j.payload::text ILIKE %(text)s)
ORDER BY j.created DESC, j.id DESC
LIMIT %(limit)s;

-- name: admin_peek
-- What runs next in one queue: the ids Redis holds, in pop order (passed in), then
-- dispatched jobs Redis does not hold (in flight, or lost and soon reconciled), then
-- ready jobs in the queuer's order (priority, run_at), all within [min, max] priority,
-- and of the caller's tenants (the admin layer has checked the queue against its scope).
SELECT * FROM (
    SELECT 0 AS grp, array_position(%(ids)s::uuid[], j.id)::bigint AS pos,
           j.id, j.queue_name, j.task, j.status, j.priority, j.attempt, j.max_attempts,
           j.run_at, j.dispatched_at, j.started, j.completed, j.failed, j.worker_id,
           left(j.last_error, 500) AS last_error, j.cancel_requested, j.created, j.updated, j.tenant,
           j.progress, j.progress_message, j.progress_at
    FROM {schema}.jobs j
    WHERE j.id = ANY(%(ids)s::uuid[]) AND j.status = {DISPATCHED}
      AND j.queue_name = %(queue)s AND (%(tenants)s::text[] IS NULL OR j.tenant = ANY(%(tenants)s::text[]))
    UNION ALL
    (SELECT 1, row_number() OVER (ORDER BY j.priority, j.dispatched_at, j.id),
            j.id, j.queue_name, j.task, j.status, j.priority, j.attempt, j.max_attempts,
            j.run_at, j.dispatched_at, j.started, j.completed, j.failed, j.worker_id,
            left(j.last_error, 500), j.cancel_requested, j.created, j.updated, j.tenant,
            j.progress, j.progress_message, j.progress_at
     FROM {schema}.jobs j
     WHERE j.status = {DISPATCHED} AND j.queue_name = %(queue)s AND (%(tenants)s::text[] IS NULL OR j.tenant = ANY(%(tenants)s::text[]))
       AND j.priority BETWEEN %(min_priority)s AND %(max_priority)s
       AND NOT (j.id = ANY(%(ids)s::uuid[]))
     ORDER BY j.priority, j.dispatched_at, j.id
     LIMIT %(n)s)
    UNION ALL
    (SELECT 2, row_number() OVER (ORDER BY j.priority, j.run_at),
            j.id, j.queue_name, j.task, j.status, j.priority, j.attempt, j.max_attempts,
            j.run_at, j.dispatched_at, j.started, j.completed, j.failed, j.worker_id,
            left(j.last_error, 500), j.cancel_requested, j.created, j.updated, j.tenant,
            j.progress, j.progress_message, j.progress_at
     FROM {schema}.jobs j
     WHERE j.status = {QUEUED} AND j.queue_name = %(queue)s AND j.run_at <= now()
       AND (%(tenants)s::text[] IS NULL OR j.tenant = ANY(%(tenants)s::text[]))
       AND j.priority BETWEEN %(min_priority)s AND %(max_priority)s
     ORDER BY j.priority, j.run_at
     LIMIT %(n)s)
) next_up
ORDER BY grp, pos
LIMIT %(n)s;

-- name: admin_job_detail
-- The job, its queue's state and the facts `why_waiting` is built from. The count of
-- jobs ahead reads jobs_ready_idx and stops at a cap, so a huge backlog stays cheap.
-- A job outside the caller's scope is not found (the admin layer answers 404, never 403:
-- that would say the id exists). For a tenant-scoped caller the counts ahead are of its
-- tenants' jobs only: other tenants' figures are not its business, even as a count.
SELECT j.id, j.queue_name, j.task, j.status, j.priority, j.attempt, j.max_attempts,
       j.run_at, j.dispatched_at, j.started, j.completed, j.failed, j.worker_id,
       j.last_error, j.cancel_requested, j.created, j.updated, j.payload, j.idempotency_key,
       j.lease_expires_at, j.timeout_seconds, j.tenant, now() AS db_now, j.unique_key,
       j.progress, j.progress_message, j.progress_at, j.tags, j.meta,
       -- The result whole up to result_cap characters of JSON, else only its head, as text:
       -- a page or a terminal is no place for megabytes. Sealed fields stay sealed.
       CASE WHEN length(j.result::text) <= %(result_cap)s THEN j.result END AS result,
       CASE WHEN length(j.result::text) > %(result_cap)s
            THEN left(j.result::text, %(result_cap)s) END AS result_head,
       j.result_error, j.pending_parents, j.on_parent_failure, j.has_dependents,
       coalesce(NOT q.is_active, false) AS queue_paused, q.paused_at AS queue_paused_at,
       CASE WHEN j.status = {QUEUED} THEN (
           SELECT count(*) FROM (
               SELECT 1 FROM {schema}.jobs a
               WHERE a.status = {QUEUED} AND a.queue_name = j.queue_name
                 AND a.run_at <= now()
                 AND (a.priority < j.priority
                      OR (a.priority = j.priority AND a.run_at < j.run_at))
                 AND (%(tenants)s::text[] IS NULL OR a.tenant = ANY(%(tenants)s::text[]))
               LIMIT %(ahead_cap)s) capped)
       END AS ready_ahead,
       (SELECT count(*) FROM {schema}.jobs d
        WHERE d.status = {DISPATCHED} AND d.queue_name = j.queue_name
          AND d.priority <= j.priority
          AND (%(tenants)s::text[] IS NULL OR d.tenant = ANY(%(tenants)s::text[])))
       AS dispatched_ahead,
       (SELECT count(*) FROM {schema}.workers w
        WHERE j.queue_name = ANY(w.queues) AND w.stopped IS NULL
          AND w.last_heartbeat >= now() - %(dead_after)s * interval '1 second') AS live_workers
FROM {schema}.jobs j
LEFT JOIN {schema}.job_queues q ON q.name = j.queue_name
WHERE j.id = %(id)s
  AND (%(tenants)s::text[] IS NULL OR j.tenant = ANY(%(tenants)s::text[]))
  AND (%(queues)s::text[] IS NULL OR j.queue_name = ANY(%(queues)s::text[]));

-- name: admin_job_attempts
SELECT status, attempt_number, log_message, traceback, worker_id, started, finished,
       extract(epoch FROM duration)::float8 AS duration_seconds
FROM {schema}.job_logs
WHERE job_id = %(id)s
ORDER BY finished, id;

-- name: admin_audit_log
-- A scoped reader sees a row only when every tenant and every queue the action touched
-- is in its scope (and the row names at least one of each: a queue-wide action, or a row
-- from before tenants were recorded, names no tenant and is shown unscoped only). A
-- NULL element (a job without tenant) never matches: `<@` is false for it.
SELECT id, at, actor, action, target, detail, result
FROM {schema}.audit_log a
WHERE (%(tenants)s::text[] IS NULL
       OR (cardinality(a.tenants) > 0 AND a.tenants <@ %(tenants)s::text[]))
  AND (%(queues)s::text[] IS NULL
       OR (cardinality(a.queues) > 0 AND a.queues <@ %(queues)s::text[]))
ORDER BY id DESC
LIMIT %(limit)s;

-- name: admin_statement_timeout
-- SET LOCAL for a parameter: the limit holds until the listing's transaction ends.
SELECT set_config('statement_timeout', %(milliseconds)s::int::text, true);
