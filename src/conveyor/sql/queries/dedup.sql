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

-- name: decide_unique_keys
-- One row per key (the caller merged duplicates within the batch). The newest job holding
-- a key decides: when it blocks (`unique_states` NULL means any status; `unique_seconds`
-- NULL means for ever), a unique or throttled enqueue is absorbed by it, and a debounced
-- one replaces the payload and run time of that job if it is still queued and has never
-- started (guarded: a queuer that dispatches it first wins, and the row is written as a
-- new job). Rows neither held nor debounced are then written by insert_jobs, in the same
-- transaction, under the same locks.
WITH t AS (
    SELECT * FROM jsonb_to_recordset(%(jobs)s::jsonb)
        AS t(id uuid, payload jsonb, delay_seconds float8, unique_key text,
             unique_states text[], unique_seconds float8, debounce boolean, sealed_for uuid)
    WHERE t.unique_key IS NOT NULL
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
      -- An encrypted payload is sealed to one job's id: it may replace that job's only.
      AND (t.sealed_for IS NULL OR j.id = t.sealed_for)
    RETURNING t.id AS request_id, j.id
)
SELECT held.request_id, held.held_id, debounced.id AS debounced_id,
       (t.debounce IS TRUE AND debounced.id IS NULL) AS write_anyway
FROM held
JOIN t ON t.id = held.request_id
LEFT JOIN debounced ON debounced.request_id = held.request_id;

-- name: debounce_targets
-- For encrypted payloads, which are sealed to a job's id: the job each debounced key would
-- replace the payload of (its newest job, still queued and never started), so the payload
-- can be sealed to that job before decide_unique_keys runs, under the same locks.
SELECT t.request_id, newest.id AS job_id
FROM unnest(%(request_ids)s::uuid[], %(keys)s::text[]) AS t(request_id, unique_key)
CROSS JOIN LATERAL (
    SELECT j.id, j.status, j.attempt FROM {schema}.jobs j
    WHERE j.unique_key = t.unique_key
    ORDER BY j.created DESC, j.id DESC LIMIT 1
) AS newest
WHERE newest.status = {QUEUED} AND newest.attempt = 0;
