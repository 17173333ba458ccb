-- Multi-tenant isolation: a job may carry a tenant, and each audit row says which tenants
-- and queues its action touched, so that a scoped viewer is shown only rows about its own.

-- NULL for every existing job (no rewrite: a nullable column without a default).
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS tenant text;
-- The same rule as queue names (client.check_tenant_name says it first, with a clear
-- error). NOT VALID: every existing row is NULL, so a validating scan of a big table
-- under this migration's lock would prove nothing; new and updated rows are checked.
ALTER TABLE {schema}.jobs ADD CONSTRAINT jobs_tenant_name CHECK (
    length(tenant) <= 100 AND tenant ~ '^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)*$'
) NOT VALID;

-- The admin listings of a tenant-scoped caller (admin_list_jobs: one range per tenant,
-- queue and status, newest first), its per-queue counts (admin_queue_stats: dead, and
-- the queues its jobs are in) and its dead-letter replay and purge. Jobs without a tenant
-- never enter it, so enqueues that do not use tenants pay nothing; a tenant's job enters
-- it when enqueued and when it finishes, like jobs_admin_list_idx (rows at rest only).
-- Built inside the migration's transaction (no CONCURRENTLY): docs/operations.md says how
-- to build it beforehand on a large table.
CREATE INDEX IF NOT EXISTS jobs_tenant_list_idx
    ON {schema}.jobs (tenant, queue_name, status, created, id)
    WHERE tenant IS NOT NULL AND status IN ('queued', 'completed', 'dead', 'cancelled');

-- The queues a tenant has jobs at rest in, with a skip scan of jobs_tenant_list_idx (one
-- probe per queue, not a read of every job of the tenant): the queue list a tenant-scoped
-- caller's stats start from, as queue_names_with_jobs() is for everyone else's.
CREATE OR REPLACE FUNCTION {schema}.queue_names_of_tenant(tenant_name text) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE seen(name) AS (
        (SELECT j.queue_name FROM {schema}.jobs j
         WHERE j.tenant = tenant_name
           AND j.status IN ('queued', 'completed', 'dead', 'cancelled')
         ORDER BY j.queue_name LIMIT 1)
        UNION ALL
        SELECT (SELECT j.queue_name FROM {schema}.jobs j
                WHERE j.tenant = tenant_name
                  AND j.status IN ('queued', 'completed', 'dead', 'cancelled')
                  AND j.queue_name > seen.name
                ORDER BY j.queue_name LIMIT 1)
        FROM seen WHERE seen.name IS NOT NULL
    )
    SELECT name FROM seen WHERE name IS NOT NULL
$$;

-- What each action touched: the distinct tenants of its jobs (a NULL element for a job
-- without tenant) and the queues of its jobs or the queue it named. NULL: not recorded
-- (rows written before this migration, or a queue-wide action for `tenants`). A scoped
-- viewer sees a row only when both are non-empty subsets of its scope (admin_audit_log).
ALTER TABLE {schema}.audit_log ADD COLUMN IF NOT EXISTS tenants text[];
ALTER TABLE {schema}.audit_log ADD COLUMN IF NOT EXISTS queues text[];
