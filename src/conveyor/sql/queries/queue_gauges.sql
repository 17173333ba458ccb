-- The queue gauges of /metrics (conveyor/queue_gauges.py), read by whichever process is
-- scraped, at most once per refresh interval. Waiting jobs come from queue_depths
-- (maintenance.sql).

-- name: running_jobs_by_queue
-- Jobs running now, per queue. Reads the partial index on running rows (jobs_running_idx).
SELECT queue_name, count(*) AS running
FROM {schema}.jobs
WHERE status = {RUNNING}
GROUP BY queue_name;

-- name: live_workers_by_queue
-- Live workers per queue they serve: a recent heartbeat (within worker.dead_after) and
-- not stopped. A worker always lists its queues (it refuses to start without one), so
-- unnesting them finds every queue it serves.
SELECT q AS queue_name, count(*) AS live_workers
FROM {schema}.workers w CROSS JOIN unnest(w.queues) AS q
WHERE w.stopped IS NULL
  AND w.last_heartbeat >= now() - %(dead_after)s * interval '1 second'
GROUP BY q;
