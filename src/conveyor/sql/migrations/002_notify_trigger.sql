-- Wake the queuer when ready jobs are inserted. A statement-level trigger sends one
-- notification per INSERT statement (not per row), delivered only if the transaction
-- commits, and covers every producer: the client, transactional enqueue, plain SQL.

CREATE OR REPLACE FUNCTION {schema}.notify_jobs_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_jobs WHERE run_at <= now()) THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '_jobs', '');
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS jobs_inserted_notify ON {schema}.jobs;
CREATE TRIGGER jobs_inserted_notify
    AFTER INSERT ON {schema}.jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_jobs_inserted();
