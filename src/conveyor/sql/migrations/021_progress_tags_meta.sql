-- Progress a running handler reports (ctx.set_progress), and the tags and meta a job is
-- enqueued with. Nullable columns without defaults: added without rewriting the table,
-- and a job that uses none of them stores nothing.
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS progress real;
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS progress_message text;
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS progress_at timestamptz;
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS tags text[];
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS meta jsonb;

-- admin_search_jobs finds jobs by tag (`tags @> ARRAY[...]`) and by meta
-- (`meta @> '{"k": "v"}'`) through these two. Partial: a job enqueued without tags or
-- meta adds no entry, so plain enqueues and every transition pay only the predicate; the
-- progress columns are in no index, so the heartbeat's progress writes can stay HOT.
CREATE INDEX IF NOT EXISTS jobs_tags_idx ON {schema}.jobs USING gin (tags)
    WHERE tags IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_meta_idx ON {schema}.jobs USING gin (meta jsonb_path_ops)
    WHERE meta IS NOT NULL;
