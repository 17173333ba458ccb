-- The metrics history (docs/metrics-history.md): the leader's rollup of finished minutes
-- into metrics_minutes and metrics_hours, its pruning, and the admin's reads.

-- name: roll_up_minutes
-- Write every complete minute not rolled up yet: from the watermark (or `catch_up`
-- minutes back, whichever is later) to the last minute that ended `grace` seconds ago,
-- so an attempt whose statement was still committing at the minute's end is in; then
-- move the watermark. One row per minute, queue and lane that saw an attempt finish, a
-- job created, or (for the newest minute only, as they are read now) a job waiting or
-- running. Attempts come from job_logs_finished_idx, created jobs from
-- jobs_created_brin, the lane from the job's priority by primary key. An upsert: a rerun
-- over the same minutes writes the same counts, and never replaces a gauge it cannot
-- know any more with NULL.
WITH bounds AS (
    SELECT s.start, s.stop
    FROM (
        SELECT greatest(
                   coalesce((SELECT rolled_through FROM {schema}.metrics_rollup_state),
                            '-infinity'),
                   n.stop - %(catch_up)s * interval '1 minute') AS start,
               n.stop
        FROM (SELECT date_trunc('minute', now() - %(grace)s * interval '1 second') AS stop) n
    ) s
    WHERE s.stop > s.start
), attempts AS (
    SELECT date_trunc('minute', l.finished) AS bucket, l.queue_name,
           CASE WHEN coalesce(j.priority, {NORMAL_PRIORITY_MAX}) <= {HIGH_PRIORITY_MAX} THEN {LANE_HIGH}
                WHEN coalesce(j.priority, {NORMAL_PRIORITY_MAX}) <= {NORMAL_PRIORITY_MAX} THEN {LANE_NORMAL}
                ELSE {LANE_LOW} END AS lane,
           l.status,
           CASE WHEN l.status IN ({LOG_COMPLETED}, {LOG_FAILED}, {LOG_DEAD})
                THEN extract(epoch FROM l.duration)::float8 END AS run_seconds,
           -- The job's run_at belongs to its latest attempt only (a retry moves it on), and
           -- only while that attempt started after it.
           CASE WHEN l.attempt_number = j.attempt AND l.started >= greatest(j.created, j.run_at)
                THEN extract(epoch FROM l.started - greatest(j.created, j.run_at))::float8
           END AS wait_seconds
    FROM {schema}.job_logs l
    LEFT JOIN {schema}.jobs j ON j.id = l.job_id
    -- Bounds as scalar subqueries: the planner then expects a narrow range (as a minute
    -- is) and looks each job up by primary key instead of hashing the whole jobs table.
    WHERE l.finished >= (SELECT start FROM bounds) AND l.finished < (SELECT stop FROM bounds)
      AND l.status IN ({LOG_COMPLETED}, {LOG_FAILED}, {LOG_DEAD}, {LOG_LOST})
), finished AS (
    SELECT bucket, queue_name, lane,
           count(*) FILTER (WHERE status = {LOG_COMPLETED}) AS completed,
           count(*) FILTER (WHERE status <> {LOG_COMPLETED}) AS failed,
           count(*) FILTER (WHERE status = {LOG_DEAD}) AS dead,
           count(*) FILTER (WHERE status IN ({LOG_FAILED}, {LOG_LOST})) AS retried,
           count(*) FILTER (WHERE status = {LOG_LOST}) AS rescued,
           coalesce(sum(run_seconds), 0) AS run_seconds,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[]) WITHIN GROUP (ORDER BY run_seconds)
               AS run_p,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[]) WITHIN GROUP (ORDER BY wait_seconds)
               AS wait_p
    FROM attempts
    GROUP BY 1, 2, 3
), created AS (
    SELECT date_trunc('minute', j.created) AS bucket, j.queue_name,
           CASE WHEN j.priority <= {HIGH_PRIORITY_MAX} THEN {LANE_HIGH}
                WHEN j.priority <= {NORMAL_PRIORITY_MAX} THEN {LANE_NORMAL}
                ELSE {LANE_LOW} END AS lane,
           count(*) AS enqueued
    FROM bounds b
    JOIN {schema}.jobs j ON j.created >= b.start AND j.created < b.stop
    GROUP BY 1, 2, 3
), gauges AS (
    -- Read now, so they belong to the newest minute. One arm per state, each on its
    -- partial index (jobs_ready_idx, jobs_dispatched_idx, jobs_running_idx): an OR of
    -- the three would scan the whole table.
    SELECT b.stop - interval '1 minute' AS bucket, s.queue_name,
           CASE WHEN s.priority <= {HIGH_PRIORITY_MAX} THEN {LANE_HIGH}
                WHEN s.priority <= {NORMAL_PRIORITY_MAX} THEN {LANE_NORMAL}
                ELSE {LANE_LOW} END AS lane,
           count(*) FILTER (WHERE NOT s.running) AS waiting,
           count(*) FILTER (WHERE s.running) AS running,
           extract(epoch FROM now() - min(s.run_at) FILTER (WHERE NOT s.running))::float8
               AS oldest_wait
    FROM bounds b
    CROSS JOIN (
        SELECT queue_name, priority, run_at, false AS running FROM {schema}.jobs
        WHERE status = {QUEUED} AND run_at <= now()
        UNION ALL
        SELECT queue_name, priority, run_at, false FROM {schema}.jobs
        WHERE status = {DISPATCHED}
        UNION ALL
        SELECT queue_name, priority, run_at, true FROM {schema}.jobs
        WHERE status = {RUNNING}
    ) s
    GROUP BY 1, 2, 3
), keys AS (
    SELECT bucket, queue_name, lane FROM finished
    UNION SELECT bucket, queue_name, lane FROM created
    UNION SELECT bucket, queue_name, lane FROM gauges
), written AS (
    INSERT INTO {schema}.metrics_minutes AS m
        (bucket, queue_name, lane, enqueued, completed, failed, dead, retried, rescued,
         waiting, running, oldest_wait, run_seconds, run_p50, run_p95, run_p99, wait_p50, wait_p95, wait_p99)
    SELECT k.bucket, k.queue_name, k.lane,
           coalesce(c.enqueued, 0), coalesce(f.completed, 0), coalesce(f.failed, 0),
           coalesce(f.dead, 0), coalesce(f.retried, 0), coalesce(f.rescued, 0),
           -- Known for the newest minute (no row: nothing waiting), unknown before it.
           CASE WHEN k.bucket = b.stop - interval '1 minute' THEN coalesce(g.waiting, 0) END,
           CASE WHEN k.bucket = b.stop - interval '1 minute' THEN coalesce(g.running, 0) END,
           g.oldest_wait, coalesce(f.run_seconds, 0),
           f.run_p[1], f.run_p[2], f.run_p[3], f.wait_p[1], f.wait_p[2], f.wait_p[3]
    FROM keys k
    CROSS JOIN bounds b
    LEFT JOIN finished f USING (bucket, queue_name, lane)
    LEFT JOIN created c USING (bucket, queue_name, lane)
    LEFT JOIN gauges g USING (bucket, queue_name, lane)
    ON CONFLICT (bucket, queue_name, lane) DO UPDATE
    SET enqueued = excluded.enqueued, completed = excluded.completed,
        failed = excluded.failed, dead = excluded.dead, retried = excluded.retried,
        rescued = excluded.rescued, run_seconds = excluded.run_seconds,
        waiting = coalesce(excluded.waiting, m.waiting),
        running = coalesce(excluded.running, m.running),
        oldest_wait = CASE WHEN excluded.waiting IS NULL THEN m.oldest_wait
                           ELSE excluded.oldest_wait END,
        run_p50 = excluded.run_p50, run_p95 = excluded.run_p95, run_p99 = excluded.run_p99,
        wait_p50 = excluded.wait_p50, wait_p95 = excluded.wait_p95,
        wait_p99 = excluded.wait_p99
    RETURNING 1
), advanced AS (
    INSERT INTO {schema}.metrics_rollup_state (singleton, rolled_through)
    SELECT true, stop FROM bounds
    ON CONFLICT (singleton) DO UPDATE SET rolled_through = excluded.rolled_through
    RETURNING rolled_through
)
SELECT b.start AS rolled_from, b.stop AS rolled_to, (SELECT count(*) FROM written) AS rows_written
FROM bounds b;

-- name: roll_up_hours
-- The hour rows of every hour that overlaps [rolled_from, rolled_to), summed from their
-- minute rows (an hour still under way is rewritten by each pass until it ends). Gauges
-- are those of the hour's last minute that has them (a key without a row there had
-- nothing waiting or running); percentiles are the worst minute's, an upper bound.
WITH hours AS (
    SELECT date_trunc('hour', %(rolled_from)s::timestamptz) AS start,
           %(rolled_to)s::timestamptz AS stop
), minutes AS (
    SELECT m.*, date_trunc('hour', m.bucket) AS hour
    FROM hours h
    JOIN {schema}.metrics_minutes m ON m.bucket >= h.start AND m.bucket < h.stop
), sampled AS (
    SELECT hour, max(bucket) AS bucket FROM minutes WHERE waiting IS NOT NULL GROUP BY hour
), summed AS (
    SELECT m.hour, m.queue_name, m.lane,
           sum(m.enqueued) AS enqueued, sum(m.completed) AS completed,
           sum(m.failed) AS failed, sum(m.dead) AS dead, sum(m.retried) AS retried,
           sum(m.rescued) AS rescued, sum(m.run_seconds) AS run_seconds,
           max(m.run_p50) AS run_p50, max(m.run_p95) AS run_p95, max(m.run_p99) AS run_p99,
           max(m.wait_p50) AS wait_p50, max(m.wait_p95) AS wait_p95, max(m.wait_p99) AS wait_p99
    FROM minutes m
    GROUP BY 1, 2, 3
)
INSERT INTO {schema}.metrics_hours AS h
    (bucket, queue_name, lane, enqueued, completed, failed, dead, retried, rescued,
     waiting, running, oldest_wait, run_seconds, run_p50, run_p95, run_p99, wait_p50,
     wait_p95, wait_p99)
SELECT s.hour, s.queue_name, s.lane, s.enqueued, s.completed, s.failed, s.dead, s.retried,
       s.rescued,
       CASE WHEN p.bucket IS NOT NULL THEN coalesce(g.waiting, 0) END,
       CASE WHEN p.bucket IS NOT NULL THEN coalesce(g.running, 0) END,
       g.oldest_wait, s.run_seconds,
       s.run_p50, s.run_p95, s.run_p99, s.wait_p50, s.wait_p95, s.wait_p99
FROM summed s
LEFT JOIN sampled p ON p.hour = s.hour
LEFT JOIN minutes g
  ON g.bucket = p.bucket AND g.queue_name = s.queue_name AND g.lane = s.lane
ON CONFLICT (bucket, queue_name, lane) DO UPDATE
SET enqueued = excluded.enqueued, completed = excluded.completed, failed = excluded.failed,
    dead = excluded.dead, retried = excluded.retried, rescued = excluded.rescued,
    run_seconds = excluded.run_seconds,
    waiting = coalesce(excluded.waiting, h.waiting),
    running = coalesce(excluded.running, h.running),
    oldest_wait = CASE WHEN excluded.waiting IS NULL THEN h.oldest_wait
                       ELSE excluded.oldest_wait END,
    run_p50 = excluded.run_p50, run_p95 = excluded.run_p95, run_p99 = excluded.run_p99,
    wait_p50 = excluded.wait_p50, wait_p95 = excluded.wait_p95, wait_p99 = excluded.wait_p99;

-- name: prune_metrics_minutes
DELETE FROM {schema}.metrics_minutes WHERE bucket < now() - %(retention)s * interval '1 second';

-- name: prune_metrics_hours
DELETE FROM {schema}.metrics_hours WHERE bucket < now() - %(retention)s * interval '1 second';

-- name: metrics_history
-- The admin's series: per bucket in [now - window, now), counts summed over the queues
-- in scope (or the one asked for) and their lanes, gauges summed, percentiles and the
-- oldest wait the worst of them. `hourly` picks the table. Buckets without a row are
-- filled in by the caller.
SELECT bucket,
       sum(enqueued)::bigint AS enqueued, sum(completed)::bigint AS completed,
       sum(failed)::bigint AS failed, sum(dead)::bigint AS dead,
       sum(retried)::bigint AS retried, sum(rescued)::bigint AS rescued,
       sum(waiting)::bigint AS waiting, sum(running)::bigint AS running,
       max(oldest_wait) AS oldest_wait,
       max(run_p50) AS run_p50, max(run_p95) AS run_p95, max(run_p99) AS run_p99,
       max(wait_p50) AS wait_p50, max(wait_p95) AS wait_p95, max(wait_p99) AS wait_p99
FROM (
    SELECT * FROM {schema}.metrics_minutes WHERE NOT %(hourly)s
    UNION ALL
    SELECT * FROM {schema}.metrics_hours WHERE %(hourly)s
) m
WHERE m.bucket >= %(since)s::timestamptz
  AND (%(queue)s::text IS NULL OR m.queue_name = %(queue)s::text)
  AND (%(queues)s::text[] IS NULL OR m.queue_name = ANY(%(queues)s::text[]))
GROUP BY bucket
ORDER BY bucket;

-- name: metrics_history_window
-- The first and the current bucket of a window ending now, at the given resolution, how
-- far the rollup has got, and the queues in scope that have history in the window (for
-- the dashboard's per-queue charts).
WITH w AS (
    SELECT date_trunc(CASE WHEN %(hourly)s THEN 'hour' ELSE 'minute' END,
                      now() - %(window)s * interval '1 second') AS since,
           date_trunc(CASE WHEN %(hourly)s THEN 'hour' ELSE 'minute' END, now()) AS until
)
SELECT w.since, w.until,
       (SELECT rolled_through FROM {schema}.metrics_rollup_state) AS rolled_through,
       ARRAY(
           SELECT DISTINCT m.queue_name FROM (
               SELECT queue_name, bucket FROM {schema}.metrics_minutes WHERE NOT %(hourly)s
               UNION ALL
               SELECT queue_name, bucket FROM {schema}.metrics_hours WHERE %(hourly)s
           ) m
           WHERE m.bucket >= w.since
             AND (%(queues)s::text[] IS NULL OR m.queue_name = ANY(%(queues)s::text[]))
           ORDER BY 1
       ) AS queues
FROM w;
