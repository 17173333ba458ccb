-- Job results and waiting for them (docs/results.md).
--
-- result: what the handler returned (JSON; encrypted fields sealed as in payloads), set by
-- the statement that ends the attempt. result_error: why a completed job's return value
-- was not kept (not JSON, over jobs.max_result_bytes). Both nullable without a default,
-- so they are added without rewriting the table and cost a job nothing while NULL.
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS result jsonb;
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS result_error text;
-- Set by `app.wait` / `app.await_job` before they wait: only jobs someone waits for are
-- announced when they end, so the hot path sends no NOTIFY. A constant default is kept in
-- the catalogue: no rewrite either.
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS awaited boolean NOT NULL DEFAULT false;

-- One notification per awaited job that ends, whichever statement ends it (record_outcomes,
-- rescue_jobs, cancel_job, expire_queued_jobs, the claims' expiry, an operator's delete,
-- purge or retention), delivered on commit. The payload is the job id. The channel keeps
-- within PostgreSQL's 63-byte identifiers whatever the schema's length; a waiter of another
-- schema sharing the prefix only ever re-reads its own job (ids are unique).
CREATE OR REPLACE FUNCTION {schema}.notify_awaited_job_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify(left(TG_TABLE_SCHEMA, 52) || '_job_ended', OLD.id::text);
    ELSE
        PERFORM pg_notify(left(TG_TABLE_SCHEMA, 52) || '_job_ended', NEW.id::text);
    END IF;
    RETURN NULL;
END;
$$;

-- Row triggers whose WHEN clause is false for every job nobody waits on: PostgreSQL tests
-- it without calling the function, so unawaited transitions queue no trigger event.
DROP TRIGGER IF EXISTS jobs_awaited_ended ON {schema}.jobs;
CREATE TRIGGER jobs_awaited_ended
    AFTER UPDATE OF status ON {schema}.jobs
    FOR EACH ROW
    WHEN (NEW.awaited AND OLD.status IS DISTINCT FROM NEW.status
          AND NEW.status IN ('completed', 'dead', 'cancelled', 'expired'))
    EXECUTE FUNCTION {schema}.notify_awaited_job_ended();

DROP TRIGGER IF EXISTS jobs_awaited_deleted ON {schema}.jobs;
CREATE TRIGGER jobs_awaited_deleted
    AFTER DELETE ON {schema}.jobs
    FOR EACH ROW
    WHEN (OLD.awaited)
    EXECUTE FUNCTION {schema}.notify_awaited_job_ended();
