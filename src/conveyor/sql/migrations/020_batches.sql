-- Batches (docs/batches.md): jobs enqueued together, counted as they end, with callback
-- jobs inserted once every job of the sealed batch has ended.
--
-- The counters are kept by triggers on jobs, in the transaction of whichever statement
-- ends a job (record_outcomes, rescue_jobs, cancel_job, the expiry statements, an
-- operator's actions): no job can end without being counted, and two workers ending the
-- last two jobs serialise on the batch row, so exactly one of them sees pending reach 0.
CREATE TABLE IF NOT EXISTS {schema}.batches (
    id              uuid PRIMARY KEY,
    description     text CHECK (description IS NULL OR char_length(description) <= 1000),
    created         timestamptz NOT NULL DEFAULT now(),
    -- Set when the `with app.batch()` block ends: no job joins afterwards, and the
    -- callbacks wait for it (a batch whose first jobs end early is not finished).
    sealed          timestamptz,
    -- Set, once, by the statement that finds the sealed batch with nothing pending; the
    -- same statement inserts the callback jobs.
    finished        timestamptz,
    total           integer NOT NULL DEFAULT 0,
    pending         integer NOT NULL DEFAULT 0,
    succeeded       integer NOT NULL DEFAULT 0,
    failed          integer NOT NULL DEFAULT 0,
    -- The callback jobs, built and validated by the client at creation (id, queue_name,
    -- task, priority, payload, max_attempts, timeout_seconds, lease_seconds, tenant);
    -- NULL when not asked for.
    on_complete     jsonb,
    on_success      jsonb,
    complete_job_id uuid,
    success_job_id  uuid
);
-- The dashboard's and the API's listing, newest first.
CREATE INDEX IF NOT EXISTS batches_created_idx ON {schema}.batches (created DESC, id);
-- The pruner's (prune_batches): finished batches by age.
CREATE INDEX IF NOT EXISTS batches_finished_idx ON {schema}.batches (finished)
    WHERE finished IS NOT NULL;

-- Nullable without a default: added without rewriting jobs, and NULL for every job
-- outside a batch.
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS batch_id uuid;
-- A batch's jobs (batch_jobs, the dashboard's batch page); jobs outside batches are not
-- in it, so it costs them nothing.
CREATE INDEX IF NOT EXISTS jobs_batch_idx ON {schema}.jobs (batch_id, id)
    WHERE batch_id IS NOT NULL;

-- A batch job moved into or out of a terminal status (an operator's retry sends a dead
-- job back to queued): move it between pending, succeeded and failed.
CREATE OR REPLACE FUNCTION {schema}.count_batch_job() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    was_done boolean := OLD.status IN ('completed', 'dead', 'cancelled', 'expired');
    is_done  boolean;
BEGIN
    IF TG_OP = 'DELETE' THEN
        -- An unfinished job deleted by an operator will never end: it counts as failed,
        -- so its batch can still finish (a finished job's counts stay as they were).
        UPDATE {schema}.batches SET pending = pending - 1, failed = failed + 1
        WHERE id = OLD.batch_id;
        RETURN NULL;
    END IF;
    is_done := NEW.status IN ('completed', 'dead', 'cancelled', 'expired');
    UPDATE {schema}.batches SET
        pending   = pending - is_done::int + was_done::int,
        succeeded = succeeded + (NEW.status = 'completed')::int
                              - (OLD.status = 'completed')::int,
        failed    = failed + (is_done AND NEW.status <> 'completed')::int
                           - (was_done AND OLD.status <> 'completed')::int
    WHERE id = NEW.batch_id;
    RETURN NULL;
END;
$$;

-- WHEN is tested without calling the function: jobs outside batches, and transitions
-- between unfinished statuses, queue no trigger event.
DROP TRIGGER IF EXISTS jobs_batch_counted ON {schema}.jobs;
CREATE TRIGGER jobs_batch_counted
    AFTER UPDATE OF status ON {schema}.jobs
    FOR EACH ROW
    WHEN (NEW.batch_id IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status
          AND (NEW.status IN ('completed', 'dead', 'cancelled', 'expired')
               OR OLD.status IN ('completed', 'dead', 'cancelled', 'expired')))
    EXECUTE FUNCTION {schema}.count_batch_job();

DROP TRIGGER IF EXISTS jobs_batch_deleted ON {schema}.jobs;
CREATE TRIGGER jobs_batch_deleted
    AFTER DELETE ON {schema}.jobs
    FOR EACH ROW
    WHEN (OLD.batch_id IS NOT NULL
          AND OLD.status NOT IN ('completed', 'dead', 'cancelled', 'expired'))
    EXECUTE FUNCTION {schema}.count_batch_job();

-- The sealed batch has nothing pending: mark it finished (once: the guard on finished)
-- and insert its callback jobs, with the batch's id and counts in their payloads.
-- on_complete always; on_success only when every job completed.
CREATE OR REPLACE FUNCTION {schema}.finish_batch() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    summary   jsonb;
    callbacks jsonb;
BEGIN
    UPDATE {schema}.batches SET
        finished = now(),
        complete_job_id = (on_complete ->> 'id')::uuid,
        success_job_id = CASE WHEN failed = 0 THEN (on_success ->> 'id')::uuid END
    WHERE id = NEW.id AND finished IS NULL;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    summary := jsonb_build_object(
        'id', NEW.id, 'description', NEW.description, 'total', NEW.total,
        'succeeded', NEW.succeeded, 'failed', NEW.failed);
    callbacks := '[]'::jsonb;
    IF NEW.on_complete IS NOT NULL THEN
        callbacks := callbacks || jsonb_build_array(NEW.on_complete);
    END IF;
    IF NEW.on_success IS NOT NULL AND NEW.failed = 0 THEN
        callbacks := callbacks || jsonb_build_array(NEW.on_success);
    END IF;
    INSERT INTO {schema}.job_queues (name)
    SELECT DISTINCT c.queue_name FROM jsonb_to_recordset(callbacks) AS c(queue_name text)
    ON CONFLICT (name) DO NOTHING;
    INSERT INTO {schema}.jobs (
        id, queue_name, task, priority, payload, max_attempts, timeout_seconds,
        lease_seconds, tenant, limited)
    SELECT t.id, t.queue_name, t.task, t.priority,
           t.payload || jsonb_build_object('batch', summary),
           t.max_attempts, t.timeout_seconds, t.lease_seconds, t.tenant,
           -- as insert_jobs: a task with a limit goes through the limited dispatch
           t.task = ANY(ARRAY(
               SELECT substr(l.scope, length('task:') + 1) FROM {schema}.flow_limits l
               WHERE starts_with(l.scope, 'task:')))
    FROM jsonb_to_recordset(callbacks)
        AS t(id uuid, queue_name text, task text, priority int, payload jsonb,
             max_attempts int, timeout_seconds float8, lease_seconds float8, tenant text);
    RETURN NULL;
END;
$$;

-- Sealing (sealed set) and the last job's end (pending down to 0) both end here, in
-- whichever of the two statements comes second on the row.
DROP TRIGGER IF EXISTS batches_finished ON {schema}.batches;
CREATE TRIGGER batches_finished
    AFTER UPDATE OF pending, sealed ON {schema}.batches
    FOR EACH ROW
    WHEN (NEW.sealed IS NOT NULL AND NEW.pending <= 0 AND NEW.finished IS NULL)
    EXECUTE FUNCTION {schema}.finish_batch();
