-- Fair dispatch between tenants (queues.<name>.fairness: tenant): the queuer walks the
-- distinct tenants with queued jobs of a queue with a skip scan (one probe per tenant,
-- never a read of a big tenant's backlog), then takes each tenant's most urgent jobs.
-- NULL tenants are indexed too (their jobs form one group of their own); limited jobs
-- are not (limited_dispatch takes them, with its own index). Built inside the
-- migration's transaction (no CONCURRENTLY): docs/operations.md says how to build it
-- beforehand on a large table.
CREATE INDEX IF NOT EXISTS jobs_tenant_ready_idx
    ON {schema}.jobs (queue_name, tenant, priority, run_at)
    WHERE status = 'queued' AND NOT limited;
