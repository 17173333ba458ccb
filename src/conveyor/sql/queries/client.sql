-- name: insert_jobs
-- Bulk insert in one statement. The batch arrives as one JSON array of records (encoded
-- in C by orjson, parsed in C by PostgreSQL). Queue rows are created on first use in
-- the same statement, so a job can never reference a queue the queuer does not know.
-- A record with `depends_on` (docs/workflows.md) locks its parents in id order, so that no
-- parent ends between the count and the commit: its end then waits for this transaction,
-- and the release trigger (migration 019) finds the new edges. Parents that ended already
-- count as ended (a locked row is read as it is now, not as the statement's snapshot saw
-- it). An unknown parent writes nothing at all; the caller asks missing_parents which.
-- For batches without dependencies the workflow parts below run on empty sets.
WITH t AS (
    SELECT * FROM jsonb_to_recordset(%(jobs)s::jsonb)
        AS t(id uuid, queue_name text, task text, priority int, payload jsonb, max_attempts int,
             run_at timestamptz, delay_seconds float8, idempotency_key text,
             timeout_seconds float8, lease_seconds float8, tenant text, trace_context jsonb,
             unique_key text, expires_at timestamptz, expires_in float8, limit_key text,
             batch_id uuid, tags text[], meta jsonb, depends_on uuid[],
             on_parent_failure text)
), wanted AS (
    SELECT DISTINCT w.id FROM t CROSS JOIN unnest(t.depends_on) AS w(id)
    WHERE t.depends_on IS NOT NULL
), refused AS (
    SELECT true AS refused FROM wanted w
    WHERE NOT EXISTS (SELECT FROM {schema}.jobs j WHERE j.id = w.id)
    LIMIT 1
), parents AS (
    UPDATE {schema}.jobs p SET has_dependents = true
    WHERE p.id IN (SELECT l.id FROM {schema}.jobs l
                   WHERE l.id IN (SELECT id FROM wanted) AND NOT EXISTS (SELECT FROM refused)
                   ORDER BY l.id
                   FOR NO KEY UPDATE)
    RETURNING p.id, p.status, p.result
), dependent AS (
    -- One row per job with parents; it carries what edges and doomed_logged need, so those
    -- never read the whole batch.
    SELECT t.id, t.depends_on, t.queue_name, t.task,
           count(*) FILTER (WHERE p.status NOT IN ({COMPLETED}, {DEAD}, {CANCELLED}, {EXPIRED}))
               AS pending,
           coalesce(bool_or(p.status IN ({DEAD}, {CANCELLED}, {EXPIRED})), false)
               AND t.on_parent_failure = {ON_FAILURE_CANCEL} AS doomed,
           jsonb_agg(jsonb_build_object('id', d.id, 'result', p.result) ORDER BY d.position)
               AS results
    FROM t CROSS JOIN unnest(t.depends_on) WITH ORDINALITY AS d(id, position)
    LEFT JOIN parents p ON p.id = d.id
    WHERE t.depends_on IS NOT NULL
    GROUP BY t.id, t.depends_on, t.queue_name, t.task, t.on_parent_failure
), new_queues AS (
    INSERT INTO {schema}.job_queues (name)
    SELECT DISTINCT queue_name FROM t WHERE NOT EXISTS (SELECT FROM refused)
    ON CONFLICT (name) DO NOTHING
), fresh AS (
    -- Only jobs with an idempotency key go through ON CONFLICT (keyed, below): a
    -- speculative insertion writes a second WAL record per row, which keyless jobs, nearly
    -- all of them, need not pay. The insert trigger still sends one notification.
    SELECT t.id, t.queue_name, t.task, t.priority,
           -- A JSON null payload reads as SQL NULL from the recordset: keep it JSON.
           coalesce(t.payload, 'null'::jsonb) AS payload, t.max_attempts,
           CASE WHEN t.delay_seconds IS NOT NULL THEN now() + t.delay_seconds * interval '1 second'
                ELSE coalesce(t.run_at, now()) END AS run_at,
           t.idempotency_key, t.timeout_seconds, t.lease_seconds, t.tenant, t.trace_context,
           t.unique_key,
           -- `deadline` is absolute; `expires_in` counts from PostgreSQL's clock, not the client's.
           coalesce(t.expires_at, now() + t.expires_in * interval '1 second') AS expires_at,
           -- A key, or a task with a limit, sends the job through the limited dispatch. The
           -- read of flow_limits is what lock_flow_limits_table waits for (limits.sql).
           t.limit_key,
           t.limit_key IS NOT NULL OR t.task = ANY(ARRAY(
               SELECT substr(l.scope, length({SCOPE_TASK}) + 1) FROM {schema}.flow_limits l
               WHERE starts_with(l.scope, {SCOPE_TASK}))) AS limited,
           -- Counted into its batch by add_to_batch, in the same transaction (batches.sql).
           t.batch_id,
           t.tags, t.meta,
           CASE WHEN dep.id IS NULL OR (dep.pending = 0 AND NOT dep.doomed) THEN {QUEUED}
                WHEN dep.doomed THEN {CANCELLED}
                ELSE {WAITING} END AS status,
           dep.pending AS pending_parents, t.on_parent_failure,
           CASE WHEN dep.pending = 0 AND NOT dep.doomed THEN dep.results END AS parent_results
    FROM t LEFT JOIN dependent dep ON dep.id = t.id
    WHERE NOT EXISTS (SELECT FROM refused)
), keyed AS (
    INSERT INTO {schema}.jobs (
        id, queue_name, task, priority, payload, max_attempts, run_at,
        idempotency_key, timeout_seconds, lease_seconds, tenant, trace_context, unique_key,
        expires_at, limit_key, limited, batch_id, tags, meta, status, pending_parents,
        on_parent_failure, parent_results)
    SELECT * FROM fresh WHERE idempotency_key IS NOT NULL
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, idempotency_key
), keyless AS (
    INSERT INTO {schema}.jobs (
        id, queue_name, task, priority, payload, max_attempts, run_at,
        idempotency_key, timeout_seconds, lease_seconds, tenant, trace_context, unique_key,
        expires_at, limit_key, limited, batch_id, tags, meta, status, pending_parents,
        on_parent_failure, parent_results)
    SELECT * FROM fresh WHERE idempotency_key IS NULL
    RETURNING id, idempotency_key
), inserted AS (
    SELECT id, idempotency_key FROM keyed
    UNION ALL
    SELECT id, idempotency_key FROM keyless
), edges AS (
    INSERT INTO {schema}.job_dependencies (child_id, position, parent_id, resolved)
    SELECT i.id, d.position, d.id,
           coalesce(p.status IN ({COMPLETED}, {DEAD}, {CANCELLED}, {EXPIRED}), true)
    FROM dependent dep
    JOIN inserted i ON i.id = dep.id
    CROSS JOIN unnest(dep.depends_on) WITH ORDINALITY AS d(id, position)
    LEFT JOIN parents p ON p.id = d.id
), doomed_logged AS (
    -- A parent that had already ended without completing: the rule applies at once.
    INSERT INTO {schema}.job_logs (job_id, queue_name, task, status, attempt_number, log_message)
    SELECT i.id, dep.queue_name, dep.task, {LOG_CANCELLED}, 0,
           'a parent had ended without completing (on_parent_failure: cancel)'
    FROM dependent dep
    JOIN inserted i ON i.id = dep.id
    WHERE dep.doomed
)
SELECT id, idempotency_key FROM inserted;

-- name: missing_parents
-- Which of these ids name no job (insert_jobs wrote nothing because of them).
SELECT w.id FROM unnest(%(ids)s::uuid[]) AS w(id)
WHERE NOT EXISTS (SELECT FROM {schema}.jobs j WHERE j.id = w.id);

-- name: job_ids_by_idempotency_key
SELECT idempotency_key, id FROM {schema}.jobs WHERE idempotency_key = ANY(%(keys)s::text[]);

-- name: get_job
SELECT id, queue_name, task, status, priority, payload, attempt, max_attempts, run_at,
       dispatched_at, started, completed, failed, worker_id, last_error, idempotency_key,
       cancel_requested, created, updated, tenant, unique_key, result, result_error,
       progress, progress_message, progress_at, tags, meta
FROM {schema}.jobs WHERE id = %(id)s;

-- name: cancel_job
-- Waiting jobs end at once (those waiting on parents too); a running job is asked to stop
-- and ends when its handler does.
WITH waiting AS (
    UPDATE {schema}.jobs
    SET status = {CANCELLED}, dispatched_at = NULL, updated = now()
    WHERE id = %(id)s AND status IN ({QUEUED}, {DISPATCHED}, {WAITING})
    RETURNING id, queue_name, task, attempt
), running AS (
    UPDATE {schema}.jobs
    SET cancel_requested = true, updated = now()
    WHERE id = %(id)s AND status = {RUNNING} AND NOT cancel_requested
    RETURNING id
), logged AS (
    INSERT INTO {schema}.job_logs (job_id, queue_name, task, status, attempt_number, log_message)
    SELECT id, queue_name, task, {CANCELLED}, attempt, %(reason)s FROM waiting
)
SELECT (SELECT count(*) FROM waiting) AS cancelled, (SELECT count(*) FROM running) AS requested;
