-- name: insert_jobs
-- Bulk insert in one statement. The batch arrives as one JSON array of records (encoded
-- in C by orjson, parsed in C by PostgreSQL). Queue rows are created on first use in
-- the same statement, so a job can never reference a queue the queuer does not know.
-- Only jobs with an idempotency key go through ON CONFLICT: a speculative insertion
-- writes a second WAL record per row (its confirmation), which keyless jobs, nearly all
-- of them, need not pay. The insert trigger still sends one notification per statement.
WITH t AS (
    SELECT * FROM jsonb_to_recordset(%(jobs)s::jsonb)
        AS t(id uuid, queue_name text, task text, priority int, payload jsonb, max_attempts int,
             run_at timestamptz, delay_seconds float8, idempotency_key text,
             timeout_seconds float8, lease_seconds float8, tenant text, trace_context jsonb,
             unique_key text, expires_at timestamptz, expires_in float8, limit_key text)
), new_queues AS (
    INSERT INTO {schema}.job_queues (name)
    SELECT DISTINCT queue_name FROM t
    ON CONFLICT (name) DO NOTHING
), fresh AS (
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
           WHERE starts_with(l.scope, {SCOPE_TASK}))) AS limited
    FROM t
), keyed AS (
    INSERT INTO {schema}.jobs (
        id, queue_name, task, priority, payload, max_attempts, run_at,
        idempotency_key, timeout_seconds, lease_seconds, tenant, trace_context, unique_key,
        expires_at, limit_key, limited)
    SELECT * FROM fresh WHERE idempotency_key IS NOT NULL
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, idempotency_key
), keyless AS (
    INSERT INTO {schema}.jobs (
        id, queue_name, task, priority, payload, max_attempts, run_at,
        idempotency_key, timeout_seconds, lease_seconds, tenant, trace_context, unique_key,
        expires_at, limit_key, limited)
    SELECT * FROM fresh WHERE idempotency_key IS NULL
    RETURNING id, idempotency_key
)
SELECT id, idempotency_key FROM keyed
UNION ALL
SELECT id, idempotency_key FROM keyless;

-- name: job_ids_by_idempotency_key
SELECT idempotency_key, id FROM {schema}.jobs WHERE idempotency_key = ANY(%(keys)s::text[]);

-- name: get_job
SELECT id, queue_name, task, status, priority, payload, attempt, max_attempts, run_at,
       dispatched_at, started, completed, failed, worker_id, last_error, idempotency_key,
       cancel_requested, created, updated, tenant, unique_key, result, result_error
FROM {schema}.jobs WHERE id = %(id)s;

-- name: cancel_job
-- Waiting jobs end at once; a running job is asked to stop and ends when its handler does.
WITH waiting AS (
    UPDATE {schema}.jobs
    SET status = {CANCELLED}, dispatched_at = NULL, updated = now()
    WHERE id = %(id)s AND status IN ({QUEUED}, {DISPATCHED})
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
