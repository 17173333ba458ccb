-- name: register_worker
INSERT INTO {schema}.workers (id, host, pid, queues, concurrency)
VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s, %(concurrency)s)
ON CONFLICT (id) DO UPDATE
SET host = excluded.host, pid = excluded.pid, queues = excluded.queues,
    concurrency = excluded.concurrency, last_heartbeat = now(), stopped = NULL;

-- name: claim_jobs
-- Claim popped job ids in one statement: dispatched -> running with a new attempt number
-- and fencing token. Ids of a paused queue go back to queued instead; ids that match
-- nothing (duplicates, cancelled, deleted rows) are simply not returned. The payload comes
-- back as text, parsed per job (store/work.py): one that cannot parse fails its own job.
-- trace_context is the producer's trace (NULL unless it was traced; see conveyor/tracing.py);
-- parent_results its parents' results (NULL unless it had parents; docs/workflows.md).
-- A job past its deadline (expires_at) is never started: it ends expired here, with its
-- job_logs row, whether or not its queue is paused (the three updates touch disjoint rows).
WITH paused AS (
    SELECT name FROM {schema}.job_queues WHERE NOT is_active
), expired AS (
    UPDATE {schema}.jobs
    SET status = {EXPIRED}, dispatched_at = NULL, updated = now()
    WHERE id = ANY(%(ids)s::uuid[]) AND status = {DISPATCHED} AND expires_at <= now()
    RETURNING id, queue_name, task, attempt
), expired_logged AS (
    INSERT INTO {schema}.job_logs (job_id, queue_name, task, status, attempt_number, log_message)
    SELECT id, queue_name, task, {LOG_EXPIRED}, attempt, 'not started before its deadline'
    FROM expired
), held_back AS (
    UPDATE {schema}.jobs
    SET status = {QUEUED}, dispatched_at = NULL, updated = now()
    WHERE id = ANY(%(ids)s::uuid[]) AND status = {DISPATCHED}
      AND queue_name IN (SELECT name FROM paused)
      AND (expires_at IS NULL OR expires_at > now())
    RETURNING id
), claimed AS (
    UPDATE {schema}.jobs j
    SET status = {RUNNING}, attempt = j.attempt + 1, lease_token = j.lease_token + 1,
        started = now(), worker_id = %(worker_id)s,
        lease_expires_at = now() + coalesce(j.lease_seconds, %(lease)s) * interval '1 second',
        updated = now()
    WHERE j.id = ANY(%(ids)s::uuid[]) AND j.status = {DISPATCHED}
      AND j.queue_name NOT IN (SELECT name FROM paused)
      AND (j.expires_at IS NULL OR j.expires_at > now())
    RETURNING j.id, j.queue_name AS queue, j.task, j.priority, j.payload::text AS payload,
              j.attempt, j.max_attempts, j.lease_token AS token, j.timeout_seconds AS timeout,
              extract(epoch FROM now() - greatest(j.created, j.run_at))::float8 AS waited,
              j.trace_context, j.snoozes, j.rate_scopes, j.parent_results
), started AS (
    -- A job dispatched under a rate counts as a start from this statement on, no longer as
    -- dispatched: one statement, so the limited dispatch sees it exactly once. Scopes in
    -- one order, so two claims never wait on each other's buckets crosswise.
    INSERT INTO {schema}.flow_starts AS f (scope, bucket, starts)
    SELECT s.scope,
           to_timestamp(floor(extract(epoch FROM now()) / {START_BUCKET_SECONDS})
                        * {START_BUCKET_SECONDS}),
           count(*)
    FROM claimed c CROSS JOIN unnest(c.rate_scopes) AS s(scope)
    GROUP BY s.scope
    ORDER BY s.scope
    ON CONFLICT (scope, bucket) DO UPDATE SET starts = f.starts + excluded.starts
)
SELECT id, queue, task, priority, payload, attempt, max_attempts, token, timeout, waited,
       trace_context, snoozes, parent_results
FROM claimed;

-- name: heartbeat
-- One statement per worker per beat: the registry row (with the worker's vitals: totals
-- since it started, written as they are, so a lost beat loses nothing), the leases that
-- are past half their life, the progress handlers reported since the last beat, and which
-- of our jobs we still own or were asked to cancel. Progress costs no statement of its
-- own: `progress` holds the latest report of each job that has one, NULL for the others.
WITH me AS (
    UPDATE {schema}.workers
    SET last_heartbeat = now(), jobs_in_flight = cardinality(%(ids)s::uuid[]),
        rss_bytes = %(rss_bytes)s::bigint, jobs_processed = %(jobs_processed)s::bigint,
        jobs_failed = %(jobs_failed)s::bigint, busy_seconds = %(busy_seconds)s::float8,
        postgres_only = %(postgres_only)s::boolean, breakers_open = %(breakers_open)s::text[]
    WHERE id = %(worker_id)s
    RETURNING id
), renewed AS (
    -- One UPDATE for both (a statement may change a row only once); a job with neither a
    -- lease to renew nor new progress is not written at all.
    UPDATE {schema}.jobs j
    SET lease_expires_at = CASE
            WHEN j.lease_expires_at < now() + coalesce(j.lease_seconds, %(lease)s) * interval '0.5 second'
            THEN now() + coalesce(j.lease_seconds, %(lease)s) * interval '1 second'
            ELSE j.lease_expires_at END,
        progress = coalesce(h.progress, j.progress),
        progress_message = CASE WHEN h.progress IS NULL THEN j.progress_message ELSE h.message END,
        progress_at = CASE WHEN h.progress IS NULL THEN j.progress_at ELSE now() END
    FROM unnest(%(ids)s::uuid[], %(tokens)s::bigint[], %(progress)s::real[],
                %(progress_messages)s::text[]) AS h(id, token, progress, message)
    WHERE j.id = h.id AND j.lease_token = h.token AND j.status = {RUNNING}
      AND (j.lease_expires_at < now() + coalesce(j.lease_seconds, %(lease)s) * interval '0.5 second'
           OR h.progress IS NOT NULL)
    RETURNING j.id
)
SELECT EXISTS (SELECT FROM me) AS registered,
       array(SELECT j.id FROM {schema}.jobs j
             JOIN unnest(%(ids)s::uuid[], %(tokens)s::bigint[]) AS h(id, token)
               ON j.id = h.id AND j.lease_token = h.token AND j.status = {RUNNING}) AS owned,
       array(SELECT j.id FROM {schema}.jobs j
             JOIN unnest(%(ids)s::uuid[], %(tokens)s::bigint[]) AS h(id, token)
               ON j.id = h.id AND j.lease_token = h.token AND j.status = {RUNNING}
             WHERE j.cancel_requested) AS cancel_requested;

-- name: record_outcomes
-- Finish many attempts in one statement. Each row only lands if the attempt still owns
-- the job (same fencing token, still running): a stale worker changes nothing.
-- The batch arrives as one JSON array of records: one parameter that orjson encodes
-- and PostgreSQL parses in C, instead of nine arrays dumped element by element. A result
-- is already JSON inside that array, so it lands in its jsonb column without another
-- parse; records without one (most of them) leave result and result_error NULL.
-- A job someone waits on is announced by the jobs_awaited_ended trigger (migration 018).
WITH o AS (
    SELECT * FROM jsonb_to_recordset(%(outcomes)s::jsonb)
        AS o(id uuid, token bigint, status text, retry_in float8, error text, traceback text,
             duration float8, log_status text, attempt_delta int, result jsonb,
             result_error text, progress real, progress_message text)
), done AS (
    UPDATE {schema}.jobs j
    SET status = o.status,
        attempt = j.attempt + o.attempt_delta,
        -- A snooze gives its attempt back (attempt_delta) and is counted here instead.
        snoozes = j.snoozes + CASE WHEN o.log_status = {LOG_SNOOZED} THEN 1 ELSE 0 END,
        completed = CASE WHEN o.status = {COMPLETED} THEN now() ELSE j.completed END,
        -- A snooze's message (its reason) goes to its job_logs row only: it is no failure.
        failed = CASE WHEN o.error IS NOT NULL AND o.log_status <> {LOG_SNOOZED}
                      THEN now() ELSE j.failed END,
        run_at = CASE WHEN o.status = {QUEUED}
                      THEN now() + coalesce(o.retry_in, 0) * interval '1 second'
                      ELSE j.run_at END,
        last_error = CASE WHEN o.log_status = {LOG_SNOOZED} THEN j.last_error
                          ELSE coalesce(o.error, j.last_error) END,
        -- What the attempt that ends the job returned; any other end clears it, so a job
        -- replayed after completing never shows the result of an earlier run.
        result = o.result, result_error = o.result_error,
        -- Progress reported after the attempt's last heartbeat; the job keeps its latest.
        progress = coalesce(o.progress, j.progress),
        progress_message = CASE WHEN o.progress IS NULL THEN j.progress_message
                                ELSE o.progress_message END,
        progress_at = CASE WHEN o.progress IS NULL THEN j.progress_at ELSE now() END,
        lease_expires_at = NULL, dispatched_at = NULL, cancel_requested = false,
        updated = now()
    FROM o
    WHERE j.id = o.id AND j.lease_token = o.token AND j.status = {RUNNING}
    RETURNING j.id, j.queue_name, j.task, j.attempt - o.attempt_delta AS attempt, j.worker_id,
              j.started, o.log_status, o.error, o.traceback, o.duration, o.result_error
), logged AS (
    INSERT INTO {schema}.job_logs (job_id, queue_name, task, status, attempt_number, log_message,
                                   traceback, worker_id, started, finished, duration)
    -- A completed attempt whose result was not kept says why in its row.
    SELECT id, queue_name, task, log_status, attempt, coalesce(error, result_error), traceback,
           worker_id, started, now(), duration * interval '1 second'
    FROM done
)
SELECT id FROM done;

-- name: deregister_worker
-- A stopped process is in no mode and holds no breaker open (alert rules read these);
-- its totals stay for the dashboard.
UPDATE {schema}.workers
SET stopped = now(), jobs_in_flight = 0, postgres_only = false, breakers_open = ARRAY[]::text[]
WHERE id = %(worker_id)s;

-- name: claim_ready_direct
-- Postgres-only mode (no Redis answers): claim up to `limit` jobs of the worker's queues
-- straight from PostgreSQL, queued -> running or dispatched -> running, fenced like
-- claim_jobs. Dispatched jobs sit in a Redis that is gone; taking them is safe, because a
-- later pop of the same id finds the job running and claim_jobs drops it. Each queue is
-- searched on its own, down the partial indexes in the order jobs leave (jobs_ready_idx
-- for queued, jobs_dispatched_idx for the dispatched buffer, bounded by
-- queuer.buffer_per_queue), skipping rows another worker holds; the best `limit` of the
-- candidates win. A pause is read in the same statement, as in claim_jobs.
-- Limited work is never claimed here (it waits for Redis and the queuer's budgets): queues
-- with a queue limit are not served, limited jobs and jobs dispatched under a rate are
-- skipped.
WITH served AS (
    SELECT q.name FROM {schema}.job_queues q
    WHERE q.name = ANY(%(queues)s::text[]) AND q.is_active
      AND NOT EXISTS (SELECT FROM {schema}.flow_limits l WHERE l.scope = {SCOPE_QUEUE} || q.name)
), ready AS (
    SELECT r.id, r.priority, r.run_at
    FROM served CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at FROM {schema}.jobs j
        WHERE j.status = {QUEUED} AND NOT j.limited AND j.queue_name = served.name
          AND j.run_at <= now()
        ORDER BY j.priority, j.run_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) r
), buffered AS (
    SELECT b.id, b.priority, b.run_at
    FROM served CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at FROM {schema}.jobs j
        WHERE j.status = {DISPATCHED} AND j.queue_name = served.name AND NOT j.limited
          AND j.rate_scopes IS NULL
        ORDER BY j.priority, j.run_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) b
), picked AS (
    SELECT c.id FROM (SELECT * FROM ready UNION ALL SELECT * FROM buffered) c
    ORDER BY c.priority, c.run_at
    LIMIT %(limit)s
), expired AS (
    -- Past its deadline: ends expired instead of starting (as in claim_jobs).
    UPDATE {schema}.jobs j
    SET status = {EXPIRED}, dispatched_at = NULL, updated = now()
    WHERE j.id = ANY(ARRAY(SELECT id FROM picked)) AND j.status IN ({QUEUED}, {DISPATCHED})
      AND j.expires_at <= now()
    RETURNING j.id, j.queue_name, j.task, j.attempt
), expired_logged AS (
    INSERT INTO {schema}.job_logs (job_id, queue_name, task, status, attempt_number, log_message)
    SELECT id, queue_name, task, {LOG_EXPIRED}, attempt, 'not started before its deadline'
    FROM expired
)
UPDATE {schema}.jobs j
SET status = {RUNNING}, attempt = j.attempt + 1, lease_token = j.lease_token + 1,
    started = now(), worker_id = %(worker_id)s,
    lease_expires_at = now() + coalesce(j.lease_seconds, %(lease)s) * interval '1 second',
    dispatched_at = NULL, updated = now()
-- An array, not a join: the planner cannot size the CTE and would hash the whole table.
WHERE j.id = ANY(ARRAY(SELECT id FROM picked)) AND j.status IN ({QUEUED}, {DISPATCHED})
  AND (j.expires_at IS NULL OR j.expires_at > now())
RETURNING j.id, j.queue_name AS queue, j.task, j.priority, j.payload, j.attempt,
          j.max_attempts, j.lease_token AS token, j.timeout_seconds AS timeout,
          extract(epoch FROM now() - greatest(j.created, j.run_at))::float8 AS waited,
          j.trace_context, j.snoozes, j.parent_results;
