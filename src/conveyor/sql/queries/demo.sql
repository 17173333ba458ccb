-- name: demo_progress
-- `conveyor demo` polls this a few times a second: jobs per queue and status.
SELECT queue_name, status, count(*) AS jobs
FROM {schema}.jobs
GROUP BY queue_name, status;

-- name: demo_summary
-- One row per queue and lane. The wait is measured to the first attempt's start, so the
-- backoff of retried jobs does not count as time spent waiting for a worker.
WITH per_job AS (
    SELECT j.queue_name,
           CASE WHEN j.priority <= {HIGH_PRIORITY_MAX} THEN {LANE_HIGH}
                WHEN j.priority <= {NORMAL_PRIORITY_MAX} THEN {LANE_NORMAL}
                ELSE {LANE_LOW} END AS lane,
           j.status, j.attempt, j.last_error,
           extract(epoch FROM coalesce(
               (SELECT min(l.started) FROM {schema}.job_logs l WHERE l.job_id = j.id),
               j.started) - j.created)::float8 AS waited
    FROM {schema}.jobs j
)
SELECT queue_name, lane,
       count(*) AS jobs,
       count(*) FILTER (WHERE status = {COMPLETED}) AS completed,
       count(*) FILTER (WHERE status = {DEAD}) AS dead,
       count(*) FILTER (WHERE attempt > 1) AS retried,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY waited) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY waited) AS p95,
       coalesce(array_agg(DISTINCT last_error) FILTER (WHERE status = {DEAD}), '{}') AS errors
FROM per_job
GROUP BY queue_name, lane
ORDER BY queue_name, CASE lane WHEN {LANE_HIGH} THEN 0 WHEN {LANE_NORMAL} THEN 1 ELSE 2 END;
