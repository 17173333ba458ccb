-- name: admin_job_graph
-- A job's parents (in depends_on order) and children (oldest first), each with its state,
-- up to `limit` of each: job_dependencies' primary key finds the parents, its parent index
-- the children. A parent retention already pruned has no row: it shows without a status.
-- Related jobs outside the caller's scope are left out (a pruned parent too, for a scoped
-- caller: whose it was is no longer known).
(SELECT 'parent' AS relation, d.position AS position, d.parent_id AS id, p.task AS task,
        p.status AS status, p.attempt AS attempt, p.queue_name AS queue_name
 FROM {schema}.job_dependencies d
 LEFT JOIN {schema}.jobs p ON p.id = d.parent_id
 WHERE d.child_id = %(id)s
   AND (%(tenants)s::text[] IS NULL OR p.tenant = ANY(%(tenants)s::text[]))
   AND (%(queues)s::text[] IS NULL OR p.queue_name = ANY(%(queues)s::text[]))
 ORDER BY d.position
 LIMIT %(limit)s)
UNION ALL
(SELECT 'child', d.position, d.child_id, c.task, c.status, c.attempt, c.queue_name
 FROM {schema}.job_dependencies d
 JOIN {schema}.jobs c ON c.id = d.child_id
 WHERE d.parent_id = %(id)s
   AND (%(tenants)s::text[] IS NULL OR c.tenant = ANY(%(tenants)s::text[]))
   AND (%(queues)s::text[] IS NULL OR c.queue_name = ANY(%(queues)s::text[]))
 ORDER BY c.created, c.id
 LIMIT %(limit)s);
