-- Observability: the leader's per-minute rollup of every queue and lane, its hourly
-- summary, and what each worker reports about itself in its heartbeat.

-- One row per minute, queue and lane, written once by the leader's rollup pass after the
-- minute has ended (an upsert, so a pass that runs twice writes the same row). Counts are
-- attempts that finished in the minute (job_logs.finished) and jobs created in it;
-- waiting, running and oldest_wait are read at the minute's end, and are NULL (unknown)
-- for a minute rolled up late, after a leader gap; percentiles in seconds.
CREATE TABLE IF NOT EXISTS {schema}.metrics_minutes (
    bucket      timestamptz NOT NULL,
    queue_name  text NOT NULL,
    lane        text NOT NULL,
    enqueued    integer NOT NULL DEFAULT 0,
    completed   integer NOT NULL DEFAULT 0,
    failed      integer NOT NULL DEFAULT 0,
    dead        integer NOT NULL DEFAULT 0,
    retried     integer NOT NULL DEFAULT 0,
    rescued     integer NOT NULL DEFAULT 0,
    waiting     integer,
    running     integer,
    oldest_wait double precision,
    -- Total handler seconds of the minute's finished attempts: with the attempt counts it
    -- gives the average run time that capacity planning (Little's law) needs.
    run_seconds double precision NOT NULL DEFAULT 0,
    run_p50     double precision,
    run_p95     double precision,
    run_p99     double precision,
    wait_p50    double precision,
    wait_p95    double precision,
    wait_p99    double precision,
    PRIMARY KEY (bucket, queue_name, lane)
);

-- The same shape, one row per hour, summed from the minute rows: counts summed, gauges
-- as at the hour's last sampled minute, percentiles the worst minute's (an upper bound;
-- recomputing them from half a million attempts an hour would cost seconds).
CREATE TABLE IF NOT EXISTS {schema}.metrics_hours (
    LIKE {schema}.metrics_minutes INCLUDING DEFAULTS,
    PRIMARY KEY (bucket, queue_name, lane)
);

-- How far the minute rollup has got: every minute before rolled_through is written, so
-- a quiet minute (no row at all) is told apart from one not yet rolled up. One row.
CREATE TABLE IF NOT EXISTS {schema}.metrics_rollup_state (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    rolled_through timestamptz NOT NULL
);

-- The rollup counts the jobs created in each minute. jobs.created grows with insertion
-- order, so a BRIN index (a few pages for millions of rows, next to nothing per insert)
-- narrows that count to the minute's block ranges instead of a scan of the whole table;
-- a B-tree here would cost every enqueue an index insert for one query a minute.
CREATE INDEX IF NOT EXISTS jobs_created_brin
    ON {schema}.jobs USING brin (created) WITH (autosummarize = on);

-- Worker health as the specification has it, written by the heartbeat it already sends
-- (no extra round trip): totals since the worker started, its resident memory, and the
-- states an alert rule needs from the worker side.
ALTER TABLE {schema}.workers
    ADD COLUMN IF NOT EXISTS rss_bytes bigint,
    ADD COLUMN IF NOT EXISTS jobs_processed bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS jobs_failed bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS busy_seconds double precision NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS postgres_only boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS breakers_open text[] NOT NULL DEFAULT '{}';
