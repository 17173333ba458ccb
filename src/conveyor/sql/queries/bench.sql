-- name: count_finished_jobs
-- `conveyor bench` polls this until every job it enqueued has ended.
SELECT count(*) AS jobs FROM {schema}.jobs WHERE status IN ({COMPLETED}, {DEAD});

-- name: count_live_workers
-- Worker processes that have registered and not stopped: bench and demo enqueue once
-- they are all up, so the timings measure the queue rather than Python starting.
SELECT count(*) AS workers FROM {schema}.workers WHERE stopped IS NULL;

-- name: bench_now
-- Where a drain run starts, on the clock every other figure is read from.
SELECT now() AS now;

-- name: bench_summary
-- Every figure from PostgreSQL's clock: created is the enqueue transaction's start,
-- started the claim's, completed the outcome's. Only completed jobs count.
SELECT count(*) AS completed,
       extract(epoch FROM max(completed) - min(created))::float8 AS span_seconds,
       max(completed) AS last_completed,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
           ORDER BY extract(epoch FROM started - created)) AS start_percentiles,
       max(extract(epoch FROM started - created))::float8 AS start_max,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
           ORDER BY extract(epoch FROM completed - created)) AS complete_percentiles,
       max(extract(epoch FROM completed - created))::float8 AS complete_max
FROM {schema}.jobs
WHERE status = {COMPLETED};

-- name: ensure_queue
-- So the scratch queue can be paused before its first job exists.
INSERT INTO {schema}.job_queues (name) VALUES (%(queue)s) ON CONFLICT (name) DO NOTHING;
