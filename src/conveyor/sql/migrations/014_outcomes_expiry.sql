-- Handler-controlled outcomes and expiry: a job may carry a deadline (expires_at) and
-- ends `expired` when no worker started it by then; a handler may snooze, which gives
-- the attempt back and counts in `snoozes` instead.

-- NULL for every existing job and for jobs enqueued without a deadline: a nullable column
-- without a default is added without rewriting the table.
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS expires_at timestamptz;
-- A constant default is stored in the catalogue (no rewrite either).
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS snoozes integer NOT NULL DEFAULT 0;

-- The new terminal state. Every existing row passes the wider check, but VALIDATE still
-- reads the table once; the ACCESS EXCLUSIVE lock is already held by the ALTERs above.
ALTER TABLE {schema}.jobs DROP CONSTRAINT IF EXISTS jobs_status_check;
ALTER TABLE {schema}.jobs ADD CONSTRAINT jobs_status_check CHECK (
    status IN ('queued', 'dispatched', 'running', 'completed', 'dead', 'cancelled', 'expired')
);

-- The Expirer's index: queued jobs with a deadline, by deadline. Jobs without one never
-- enter it, so enqueues that do not use expiry pay nothing.
CREATE INDEX IF NOT EXISTS jobs_expiry_idx
    ON {schema}.jobs (expires_at) WHERE status = 'queued' AND expires_at IS NOT NULL;

-- Expired jobs are at rest like cancelled ones: the listing indexes and the skip-scan
-- functions that read them must see them. Each index is built under a new name, then
-- takes the old one's place: an operator who built the new one beforehand with CREATE
-- INDEX CONCURRENTLY (docs/operations.md) leaves this migration only catalogue changes.
CREATE INDEX IF NOT EXISTS jobs_admin_list_014_idx
    ON {schema}.jobs (queue_name, status, created, id)
    WHERE status IN ('queued', 'completed', 'dead', 'cancelled', 'expired');
DROP INDEX IF EXISTS {schema}.jobs_admin_list_idx;
ALTER INDEX {schema}.jobs_admin_list_014_idx RENAME TO jobs_admin_list_idx;

CREATE INDEX IF NOT EXISTS jobs_tenant_list_014_idx
    ON {schema}.jobs (tenant, queue_name, status, created, id)
    WHERE tenant IS NOT NULL AND status IN ('queued', 'completed', 'dead', 'cancelled', 'expired');
DROP INDEX IF EXISTS {schema}.jobs_tenant_list_idx;
ALTER INDEX {schema}.jobs_tenant_list_014_idx RENAME TO jobs_tenant_list_idx;

CREATE OR REPLACE FUNCTION {schema}.queue_names_with_jobs() RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE seen(name) AS (
        (SELECT j.queue_name FROM {schema}.jobs j
         WHERE j.status IN ('queued', 'completed', 'dead', 'cancelled', 'expired')
         ORDER BY j.queue_name LIMIT 1)
        UNION ALL
        SELECT (SELECT j.queue_name FROM {schema}.jobs j
                WHERE j.status IN ('queued', 'completed', 'dead', 'cancelled', 'expired')
                  AND j.queue_name > seen.name
                ORDER BY j.queue_name LIMIT 1)
        FROM seen WHERE seen.name IS NOT NULL
    )
    SELECT name FROM seen WHERE name IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION {schema}.queue_names_of_tenant(tenant_name text) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE seen(name) AS (
        (SELECT j.queue_name FROM {schema}.jobs j
         WHERE j.tenant = tenant_name
           AND j.status IN ('queued', 'completed', 'dead', 'cancelled', 'expired')
         ORDER BY j.queue_name LIMIT 1)
        UNION ALL
        SELECT (SELECT j.queue_name FROM {schema}.jobs j
                WHERE j.tenant = tenant_name
                  AND j.status IN ('queued', 'completed', 'dead', 'cancelled', 'expired')
                  AND j.queue_name > seen.name
                ORDER BY j.queue_name LIMIT 1)
        FROM seen WHERE seen.name IS NOT NULL
    )
    SELECT name FROM seen WHERE name IS NOT NULL
$$;
