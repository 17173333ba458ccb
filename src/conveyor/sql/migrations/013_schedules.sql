-- Periodic jobs: one row per schedule, written by whoever defines it (`conveyor worker`
-- for schedules declared in the app's code, the queuer for the `schedules` section of the
-- configuration) and advanced by the scheduler pass, which every queuer runs.

CREATE TABLE IF NOT EXISTS {schema}.schedules (
    name            text PRIMARY KEY,
    task            text NOT NULL,
    cron            text NOT NULL,
    timezone        text NOT NULL DEFAULT 'UTC',
    payload         jsonb,
    queue_name      text NOT NULL,
    priority        integer NOT NULL,
    max_attempts    integer NOT NULL,
    timeout_seconds double precision,
    lease_seconds   double precision,
    -- skip, run_once or backfill (validated where the schedule is defined).
    misfire         text NOT NULL,
    backfill_limit  integer NOT NULL DEFAULT 10 CHECK (backfill_limit >= 1),
    -- code or config: who defines it, so config-defined rows no longer configured can go.
    source          text NOT NULL,
    paused          boolean NOT NULL DEFAULT false,
    -- The earliest tick not yet enqueued; NULL until the scheduler first computes it from
    -- PostgreSQL's clock (a new schedule, a changed cron or time zone, a resume). The
    -- scheduler moves it with an UPDATE guarded by its old value: two queuers that read the
    -- same tick cannot both enqueue it.
    next_run_at     timestamptz,
    last_run_at     timestamptz,
    last_job_id     uuid,
    created         timestamptz NOT NULL DEFAULT now(),
    updated         timestamptz NOT NULL DEFAULT now()
);
