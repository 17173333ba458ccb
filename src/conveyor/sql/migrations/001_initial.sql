-- Conveyor schema, version 1.
-- The schema name is substituted by the migrator ({schema}); everything else is literal.

CREATE TABLE IF NOT EXISTS {schema}.job_queues (
    name             text PRIMARY KEY,
    default_priority integer NOT NULL DEFAULT 100,
    is_active        boolean NOT NULL DEFAULT true,
    paused_at        timestamptz,
    created          timestamptz NOT NULL DEFAULT now(),
    updated          timestamptz NOT NULL DEFAULT now()
);

-- Jobs see several updates each (dispatch, claim, heartbeat, finish): leave room on each
-- page so PostgreSQL can keep the new tuple version on the same page.
CREATE TABLE IF NOT EXISTS {schema}.jobs (
    id               uuid PRIMARY KEY,
    queue_name       text NOT NULL,
    task             text NOT NULL,
    status           text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'dispatched', 'running', 'completed', 'dead', 'cancelled')),
    priority         integer NOT NULL DEFAULT 100,
    payload          jsonb NOT NULL,
    attempt          integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts     integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    -- Bumped by every claim; heartbeats, outcomes and rescues must present it (fencing).
    lease_token      bigint NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    dispatched_at    timestamptz,
    started          timestamptz,
    lease_expires_at timestamptz,
    completed        timestamptz,
    failed           timestamptz,
    worker_id        text,
    last_error       text,
    idempotency_key  text,
    timeout_seconds  double precision,
    lease_seconds    double precision,
    cancel_requested boolean NOT NULL DEFAULT false,
    created          timestamptz NOT NULL DEFAULT now(),
    updated          timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);

-- The queuer's index: only jobs waiting in PostgreSQL, in the order they leave.
CREATE INDEX IF NOT EXISTS jobs_ready_idx
    ON {schema}.jobs (queue_name, priority, run_at) WHERE status = 'queued';
-- Bounded by the Redis buffer: the queuer counts it, the reconciler compares it with Redis.
CREATE INDEX IF NOT EXISTS jobs_dispatched_idx
    ON {schema}.jobs (queue_name, dispatched_at) WHERE status = 'dispatched';
-- The rescuer's index: running jobs by lease and by owner.
CREATE INDEX IF NOT EXISTS jobs_running_idx
    ON {schema}.jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS jobs_running_worker_idx
    ON {schema}.jobs (worker_id) WHERE status = 'running';
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency_key_idx
    ON {schema}.jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- One row per attempt (and per operator action), written in the statement that ends it.
CREATE TABLE IF NOT EXISTS {schema}.job_logs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id         uuid NOT NULL,
    queue_name     text NOT NULL,
    task           text NOT NULL,
    status         text NOT NULL,
    attempt_number integer NOT NULL,
    log_message    text,
    traceback      text,
    worker_id      text,
    started        timestamptz,
    finished       timestamptz NOT NULL DEFAULT now(),
    duration       interval,
    created        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS job_logs_job_idx ON {schema}.job_logs (job_id, attempt_number);
CREATE INDEX IF NOT EXISTS job_logs_finished_idx ON {schema}.job_logs (finished);

CREATE TABLE IF NOT EXISTS {schema}.workers (
    id             text PRIMARY KEY,
    host           text NOT NULL,
    pid            integer NOT NULL,
    queues         text[] NOT NULL,
    concurrency    integer NOT NULL,
    started        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat timestamptz NOT NULL DEFAULT now(),
    jobs_in_flight integer NOT NULL DEFAULT 0,
    stopped        timestamptz
);

CREATE TABLE IF NOT EXISTS {schema}.audit_log (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,
    action   text NOT NULL,
    target   text,
    detail   jsonb,
    result   text NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON {schema}.audit_log (at);
