-- name: dispatch_ready
-- Move ready jobs of active queues into the dispatched state, at most `batch` per queue
-- and never more than the queue's free room in the Redis buffer. SKIP LOCKED lets several
-- queuers run side by side without handing out the same job twice.
-- Limited work is not this statement's: queues with a queue limit are skipped, and jobs
-- with a key or a limited task (jobs.limited) sit in their own part of jobs_ready_idx,
-- which this scan never enters (limited_dispatch in limits.sql takes them).
-- Its commit does not wait for the WAL flush (synchronous_commit off for this transaction
-- only): a dispatch lost in a server crash leaves its jobs queued, their ids in Redis find
-- nothing to claim (claim_jobs wants dispatched) and the next pass dispatches them again;
-- and a claim's flushed commit flushes the dispatch before it. docs/architecture.md,
-- "Work per job", has the whole argument, and why the claim keeps its flush.
WITH unflushed AS MATERIALIZED (
    SELECT set_config('synchronous_commit', 'off', true) AS setting
), room AS (
    SELECT q.name,
           greatest(%(buffer)s - (SELECT count(*) FROM {schema}.jobs d
                                  WHERE d.status = {DISPATCHED} AND d.queue_name = q.name), 0)
               AS free
    FROM {schema}.job_queues q
    WHERE q.is_active
      AND NOT EXISTS (SELECT FROM {schema}.flow_limits l WHERE l.scope = {SCOPE_QUEUE} || q.name)
      -- `skip`: queues with fairness between tenants (dispatch_fair in fairness.sql).
      AND NOT q.name = ANY(%(skip)s::text[])
), picked AS (
    SELECT p.id
    FROM room CROSS JOIN LATERAL (
        SELECT j.id FROM {schema}.jobs j
        WHERE j.status = {QUEUED} AND NOT j.limited AND j.queue_name = room.name
          AND j.run_at <= now()
        ORDER BY j.priority, j.run_at
        LIMIT least(room.free, %(batch)s)
        FOR UPDATE SKIP LOCKED
    ) p
    WHERE room.free > 0
)
UPDATE {schema}.jobs j
SET status = {DISPATCHED}, dispatched_at = now(), updated = now()
-- An array, not a join: the planner cannot size the CTE and would hash the whole table.
WHERE j.id = ANY(ARRAY(SELECT id FROM picked)) AND j.status = {QUEUED}
  AND (SELECT setting FROM unflushed) IS NOT NULL
RETURNING j.id, j.queue_name, j.priority,
          extract(epoch FROM now() - greatest(j.created, j.run_at))::float8 AS waited;

-- name: undispatch
-- The push to Redis failed: put the jobs back so the next pass tries again.
UPDATE {schema}.jobs SET status = {QUEUED}, dispatched_at = NULL, updated = now()
WHERE id = ANY(%(ids)s::uuid[]) AND status = {DISPATCHED}
RETURNING id;

-- name: undispatch_all_before
-- Redis lost its contents: everything dispatched before the loss is waiting nowhere.
UPDATE {schema}.jobs SET status = {QUEUED}, dispatched_at = NULL, updated = now()
WHERE status = {DISPATCHED} AND dispatched_at <= %(before)s;

-- name: db_now
SELECT now() AS now;

-- name: paused_queues
SELECT name FROM {schema}.job_queues WHERE NOT is_active ORDER BY name;

-- name: has_backlog
-- True when some active queue has ready jobs but no room left in Redis. Limited work
-- waiting for its budget is not a backlog: the limited dispatch says when to look again.
SELECT EXISTS (
    SELECT 1 FROM {schema}.job_queues q
    WHERE q.is_active
      AND NOT EXISTS (SELECT FROM {schema}.flow_limits l WHERE l.scope = {SCOPE_QUEUE} || q.name)
      AND EXISTS (
        SELECT 1 FROM {schema}.jobs j
        WHERE j.status = {QUEUED} AND NOT j.limited AND j.queue_name = q.name
          AND j.run_at <= now())
) AS backlog;

-- name: listen_for_jobs
-- The channel is filled in as a quoted identifier by store/listen.py: LISTEN takes no
-- parameters. The insert trigger (migration 002) notifies "<schema>_jobs".
LISTEN {channel};

-- name: try_leader_lock
-- A session lock: it lasts as long as the LISTEN connection, so a queuer that dies or
-- loses that connection hands maintenance to another at once.
SELECT pg_try_advisory_lock(%(lock)s) AS locked;

-- name: take_leader_lease
-- Takes the lease when it is free or expired, renews it when we hold it; one statement,
-- so two queuers racing for an expired lease cannot both win. A row comes back only to
-- the holder.
INSERT INTO {schema}.leader AS l (name, holder, expires_at)
VALUES (%(name)s, %(holder)s, now() + make_interval(secs => %(lease)s))
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE l.expires_at < now() OR l.holder = excluded.holder
RETURNING l.holder AS holder;

-- name: release_leader_lease
-- On shutdown: the next queuer takes over at its next try instead of after the lease.
DELETE FROM {schema}.leader WHERE name = %(name)s AND holder = %(holder)s;

-- name: jit_enabled
-- Behind a transaction-mode pooler the connection's `-c jit=off` cannot be sent: is JIT on?
SELECT current_setting('jit') = 'on' AND pg_jit_available() AS enabled;

-- name: aged_in_low_lane
-- Dispatched low-lane jobs (priority above the normal lane's) that have waited longer than
-- their queue's aging time (its own, else `default`; NULL: no aging): the ones the aging
-- pass moves to the normal lane. Dispatched jobs are at most queuer.buffer_per_queue per
-- queue (jobs_dispatched_idx), so this reads little.
SELECT j.id, j.queue_name
FROM {schema}.jobs j
LEFT JOIN unnest(%(queues)s::text[], %(agings)s::float8[]) AS a(name, seconds)
  ON a.name = j.queue_name
WHERE j.status = {DISPATCHED} AND j.priority > {NORMAL_PRIORITY_MAX}
  AND greatest(j.created, j.run_at)
      < now() - coalesce(a.seconds, %(default)s::float8) * interval '1 second'
ORDER BY j.queue_name, j.priority, j.run_at
LIMIT %(limit)s;
