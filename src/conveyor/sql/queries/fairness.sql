-- name: dispatch_fair
-- Dispatch the ready jobs of queues with fairness between tenants, round-robin: each
-- tenant with queued jobs (and one group for jobs without a tenant) gets an equal share
-- of the queue's free room (at most `batch`), its most urgent jobs first; `turn` says
-- which round a job belongs to, and the queuer pushes round by round, so tenants
-- interleave in the lane. A share a tenant cannot fill stays free for the next pass.
-- The same room rule and guard as dispatch_ready; SKIP LOCKED for concurrent queuers.
-- Limited jobs (jobs.limited) are limited_dispatch's, as in dispatch_ready.
WITH RECURSIVE room AS (
    SELECT q.name,
           least(greatest(%(buffer)s - (SELECT count(*) FROM {schema}.jobs d
                                        WHERE d.status = {DISPATCHED} AND d.queue_name = q.name),
                          0), %(batch)s) AS free
    FROM {schema}.job_queues q
    WHERE q.is_active AND q.name = ANY(%(queues)s::text[])
      -- A queue limit wins: limited_dispatch (limits.sql) takes such a queue's jobs.
      AND NOT EXISTS (SELECT FROM {schema}.flow_limits l WHERE l.scope = {SCOPE_QUEUE} || q.name)
), tenants AS (
    -- A skip scan of jobs_tenant_ready_idx: the next tenant after the last one found.
    SELECT r.name,
           (SELECT j.tenant FROM {schema}.jobs j
            WHERE j.status = {QUEUED} AND NOT j.limited AND j.queue_name = r.name AND j.tenant IS NOT NULL
            ORDER BY j.tenant LIMIT 1) AS tenant
    FROM room r WHERE r.free > 0
    UNION ALL
    SELECT t.name,
           (SELECT j.tenant FROM {schema}.jobs j
            WHERE j.status = {QUEUED} AND NOT j.limited AND j.queue_name = t.name AND j.tenant > t.tenant
            ORDER BY j.tenant LIMIT 1)
    FROM tenants t WHERE t.tenant IS NOT NULL
), groups AS (
    SELECT t.name, t.tenant FROM tenants t WHERE t.tenant IS NOT NULL
    UNION ALL
    SELECT r.name, NULL FROM room r
    WHERE r.free > 0 AND EXISTS (
        SELECT 1 FROM {schema}.jobs j
        WHERE j.status = {QUEUED} AND NOT j.limited AND j.queue_name = r.name AND j.tenant IS NULL)
), shares AS (
    SELECT g.name, g.tenant,
           ceil(r.free::numeric / count(*) OVER (PARTITION BY g.name))::int AS share
    FROM groups g JOIN room r ON r.name = g.name
), candidates AS (
    SELECT s.name, s.tenant, c.id, c.priority, c.run_at
    FROM shares s CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at FROM {schema}.jobs j
        WHERE j.status = {QUEUED} AND NOT j.limited AND j.queue_name = s.name AND j.tenant = s.tenant
          AND j.run_at <= now()
        ORDER BY j.priority, j.run_at
        LIMIT s.share
    ) c
    WHERE s.tenant IS NOT NULL
    UNION ALL
    SELECT s.name, NULL, c.id, c.priority, c.run_at
    FROM shares s CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at FROM {schema}.jobs j
        WHERE j.status = {QUEUED} AND NOT j.limited AND j.queue_name = s.name AND j.tenant IS NULL
          AND j.run_at <= now()
        ORDER BY j.priority, j.run_at
        LIMIT s.share
    ) c
    WHERE s.tenant IS NULL
), turns AS (
    SELECT c.id, c.name, c.tenant, c.priority,
           row_number() OVER (PARTITION BY c.name, c.tenant ORDER BY c.priority, c.run_at)
               AS turn
    FROM candidates c
), picked AS (
    -- Rounding the shares up may give a few more than the room: the last rounds wait.
    SELECT ranked.id, ranked.turn FROM (
        SELECT t.id, t.turn, t.name,
               row_number() OVER (PARTITION BY t.name ORDER BY t.turn, t.priority, t.tenant)
                   AS place
        FROM turns t
    ) ranked JOIN room r ON r.name = ranked.name
    WHERE ranked.place <= r.free
), locked AS (
    SELECT j.id FROM {schema}.jobs j
    WHERE j.id = ANY(ARRAY(SELECT id FROM picked)) AND j.status = {QUEUED}
    FOR UPDATE SKIP LOCKED
), moved AS (
    UPDATE {schema}.jobs j
    SET status = {DISPATCHED}, dispatched_at = now(), updated = now()
    -- An array, not a join: the planner cannot size the CTE and would hash the table.
    WHERE j.id = ANY(ARRAY(SELECT id FROM locked)) AND j.status = {QUEUED}
    RETURNING j.id, j.queue_name, j.priority
)
SELECT m.id, m.queue_name, m.priority, p.turn
FROM moved m JOIN picked p ON p.id = m.id
ORDER BY m.queue_name, p.turn, m.priority;
