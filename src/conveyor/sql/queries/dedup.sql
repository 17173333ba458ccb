-- name: lock_unique_keys
-- Serialises enqueues of the same keys until the transaction ends, so the next statement
-- (a fresh snapshot under READ COMMITTED) sees every job committed with these keys. The
-- keys arrive sorted: two batches sharing keys take their locks in the same order. The
-- isolation level is returned because a REPEATABLE READ transaction keeps the snapshot it
-- took before the lock, and would not see the job the previous holder committed.
SELECT count(*) AS locked, current_setting('transaction_isolation') AS isolation FROM (
    SELECT pg_advisory_xact_lock(hashtextextended(%(schema_name)s || ':' || k, 0))
    FROM unnest(%(keys)s::text[]) AS k
) AS taken;

-- name: enqueue_deduplicated
-- One row per key (the caller merged duplicates within the batch). The newest job holding
-- a key decides: when it blocks (`unique_states` NULL means any status; `unique_seconds`
-- NULL means for ever), a unique or throttled enqueue adds nothing and a debounced one
-- replaces the payload and run time of that job if it is still queued and never started
-- (guarded: a queuer that dispatches it first wins, and a new job is written instead).
WITH t AS (
    SELECT * FROM jsonb_to_recordset(%(jobs)s::jsonb)
        AS t(id uuid, queue_name text, task text, priority int, payload jsonb, max_attempts int,
             run_at timestamptz, delay_seconds float8, timeout_seconds float8,
             lease_seconds float8, tenant text, trace_context jsonb, unique_key text,
             unique_states text[], unique_seconds float8, debounce boolean)
), held AS (
    SELECT t.id AS request_id, newest.id AS held_id
    FROM t CROSS JOIN LATERAL (
        SELECT j.id, j.status, j.created FROM {schema}.jobs j
        WHERE j.unique_key = t.unique_key
        ORDER BY j.created DESC, j.id DESC LIMIT 1
    ) AS newest
    WHERE (t.unique_states IS NULL OR newest.status = ANY(t.unique_states))
      AND (t.unique_seconds IS NULL
           OR newest.created > now() - t.unique_seconds * interval '1 second')
), debounced AS (
    UPDATE {schema}.jobs j
    SET payload = t.payload,
        run_at = now() + coalesce(t.delay_seconds, 0) * interval '1 second',
        updated = now()
    FROM t JOIN held ON held.request_id = t.id
    WHERE t.debounce IS TRUE AND j.id = held.held_id AND j.status = {QUEUED} AND j.attempt = 0
    RETURNING t.id AS request_id, j.id
), new_queues AS (
    INSERT INTO {schema}.job_queues (name)
    SELECT DISTINCT queue_name FROM t
    ON CONFLICT (name) DO NOTHING
), inserted AS (
    INSERT INTO {schema}.jobs (
        id, queue_name, task, priority, payload, max_attempts, run_at,
        timeout_seconds, lease_seconds, tenant, trace_context, unique_key)
    SELECT t.id, t.queue_name, t.task, t.priority, t.payload, t.max_attempts,
           CASE WHEN t.delay_seconds IS NOT NULL
                THEN now() + t.delay_seconds * interval '1 second'
                ELSE coalesce(t.run_at, now()) END,
           t.timeout_seconds, t.lease_seconds, t.tenant, t.trace_context, t.unique_key
    FROM t
    WHERE NOT EXISTS (SELECT FROM held WHERE held.request_id = t.id AND t.debounce IS NOT TRUE)
      AND NOT EXISTS (SELECT FROM debounced WHERE debounced.request_id = t.id)
    RETURNING id
)
SELECT t.id AS request_id, inserted.id AS inserted_id, debounced.id AS debounced_id,
       held.held_id AS held_id
FROM t
LEFT JOIN inserted ON inserted.id = t.id
LEFT JOIN debounced ON debounced.request_id = t.id
LEFT JOIN held ON held.request_id = t.id;
