-- Workflows: jobs that wait for other jobs (depends_on, chains, chords; docs/workflows.md).
--
-- A child waits in PostgreSQL, status `waiting`, until each of its parents has ended. The
-- statement that ends its last parent (whichever: record_outcomes, rescue_jobs,
-- cancel_job, an expiry, an operator's delete) releases it in the same transaction, through
-- the row triggers below, whose WHEN clauses are false for every job without dependents:
-- PostgreSQL tests them without calling the function, so the hot path pays nothing.

-- The child's side. All NULL for jobs without parents (nullable, no default: added without
-- rewriting the table, and a job without parents stores nothing more).
-- pending_parents: parents not yet ended; the child is released when it reaches 0.
-- on_parent_failure: 'cancel' (a parent that did not complete cancels the child) or 'run'
-- (it counts as ended; its result is null).
-- parent_results: its parents' ids and results ([{"id", "result"}] in depends_on order),
-- written when it is released (results sealed to their own job stay sealed).
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS pending_parents integer;
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS on_parent_failure text;
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS parent_results jsonb;
-- The parent's side: set by the enqueue of its first child. A constant default is kept in
-- the catalogue: no rewrite either.
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS has_dependents boolean NOT NULL DEFAULT false;

ALTER TABLE {schema}.jobs DROP CONSTRAINT IF EXISTS jobs_on_parent_failure_check;
ALTER TABLE {schema}.jobs ADD CONSTRAINT jobs_on_parent_failure_check
    CHECK (on_parent_failure IN ('cancel', 'run'));

-- The new state, not terminal. Every existing row passes the wider check.
ALTER TABLE {schema}.jobs DROP CONSTRAINT IF EXISTS jobs_status_check;
ALTER TABLE {schema}.jobs ADD CONSTRAINT jobs_status_check CHECK (
    status IN ('queued', 'dispatched', 'running', 'completed', 'dead', 'cancelled', 'expired',
               'waiting')
);

-- The admin listing of waiting jobs (admin_list_jobs reads it as it reads the dispatched
-- and running indexes). Only waiting jobs enter it.
CREATE INDEX IF NOT EXISTS jobs_waiting_idx
    ON {schema}.jobs (queue_name, created, id) WHERE status = 'waiting';

-- One row per edge, in the child's depends_on order. `resolved`: the parent's end has been
-- counted, so a parent that ends twice (replayed after it died) is counted once. Edges go
-- with their child (trigger below), not with the parent: pruning a parent must not shift
-- the positions of a child still waiting.
CREATE TABLE IF NOT EXISTS {schema}.job_dependencies (
    child_id  uuid NOT NULL,
    position  integer NOT NULL,
    parent_id uuid NOT NULL,
    resolved  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (child_id, position)
);
-- The release trigger and the job graph find a parent's children by it.
CREATE INDEX IF NOT EXISTS job_dependencies_parent_idx
    ON {schema}.job_dependencies (parent_id);

-- A parent ended (or was deleted before it ended): count it for each waiting child. A
-- completed parent, or any parent of a child whose rule is 'run', brings the child one
-- closer to queued; at zero it is queued with its parents' results. Any other end cancels
-- a child whose rule is 'cancel', with its job_logs row; that cancellation ends the child,
-- so this trigger runs again for the child's own children.
CREATE OR REPLACE FUNCTION {schema}.release_dependents() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ended_id uuid;
    ending text;
    children uuid[];
    released integer;
BEGIN
    IF TG_OP = 'DELETE' THEN
        ended_id := OLD.id;
        ending := 'deleted';
    ELSE
        ended_id := NEW.id;
        ending := NEW.status;
    END IF;
    WITH resolved AS (
        UPDATE {schema}.job_dependencies d SET resolved = true
        WHERE d.parent_id = ended_id AND NOT d.resolved
        RETURNING d.child_id
    )
    SELECT array_agg(DISTINCT child_id) INTO children FROM resolved;
    IF children IS NULL THEN
        RETURN NULL;
    END IF;
    -- Lock the children first (in one order), so the statements below take their snapshot
    -- after any other parent's transaction that held a child has committed: its result is
    -- then visible to the release.
    PERFORM 1 FROM {schema}.jobs c WHERE c.id = ANY(children) ORDER BY c.id FOR UPDATE;
    WITH counted AS (
        UPDATE {schema}.jobs c
        SET pending_parents = c.pending_parents - 1,
            status = CASE WHEN c.pending_parents = 1 THEN 'queued' ELSE 'waiting' END,
            run_at = CASE WHEN c.pending_parents = 1 THEN greatest(c.run_at, now())
                          ELSE c.run_at END,
            parent_results = CASE WHEN c.pending_parents = 1 THEN (
                SELECT jsonb_agg(jsonb_build_object('id', d.parent_id, 'result', p.result)
                                 ORDER BY d.position)
                FROM {schema}.job_dependencies d
                LEFT JOIN {schema}.jobs p ON p.id = d.parent_id
                WHERE d.child_id = c.id) END,
            updated = now()
        WHERE c.id = ANY(children) AND c.status = 'waiting'
          AND (ending = 'completed' OR c.on_parent_failure = 'run')
        RETURNING c.pending_parents
    )
    SELECT count(*) FILTER (WHERE pending_parents = 0) INTO released FROM counted;
    IF released > 0 THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '_jobs', '');
    END IF;
    IF ending <> 'completed' THEN
        WITH cancelled AS (
            UPDATE {schema}.jobs c
            SET status = 'cancelled', updated = now()
            WHERE c.id = ANY(children) AND c.status = 'waiting' AND c.on_parent_failure = 'cancel'
            RETURNING c.id, c.queue_name, c.task, c.attempt
        )
        INSERT INTO {schema}.job_logs (job_id, queue_name, task, status, attempt_number, log_message)
        SELECT id, queue_name, task, 'cancelled', attempt,
               'parent ' || ended_id || ' ended ' || ending || ' (on_parent_failure: cancel)'
        FROM cancelled;
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS jobs_dependents_released ON {schema}.jobs;
CREATE TRIGGER jobs_dependents_released
    AFTER UPDATE OF status ON {schema}.jobs
    FOR EACH ROW
    WHEN (NEW.has_dependents AND OLD.status IS DISTINCT FROM NEW.status
          AND NEW.status IN ('completed', 'dead', 'cancelled', 'expired'))
    EXECUTE FUNCTION {schema}.release_dependents();

-- A parent deleted after it ended was counted then; one deleted before (an operator's
-- delete) ends now, as a parent that did not complete.
DROP TRIGGER IF EXISTS jobs_dependents_deleted ON {schema}.jobs;
CREATE TRIGGER jobs_dependents_deleted
    AFTER DELETE ON {schema}.jobs
    FOR EACH ROW
    WHEN (OLD.has_dependents
          AND OLD.status NOT IN ('completed', 'dead', 'cancelled', 'expired'))
    EXECUTE FUNCTION {schema}.release_dependents();

-- A child's edges go with it (retention, purge, delete).
CREATE OR REPLACE FUNCTION {schema}.forget_dependencies() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {schema}.job_dependencies WHERE child_id = OLD.id;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS jobs_dependencies_deleted ON {schema}.jobs;
CREATE TRIGGER jobs_dependencies_deleted
    AFTER DELETE ON {schema}.jobs
    FOR EACH ROW
    WHEN (OLD.pending_parents IS NOT NULL)
    EXECUTE FUNCTION {schema}.forget_dependencies();

-- Waiting jobs are not ready: an insert of only those does not wake the queuer.
CREATE OR REPLACE FUNCTION {schema}.notify_jobs_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_jobs WHERE run_at <= now() AND status = 'queued') THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '_jobs', '');
    END IF;
    RETURN NULL;
END;
$$;
