-- Global rate and concurrency limits (docs/scheduling.md, "Rate and concurrency limits").
-- A limit belongs to a scope: "queue:<name>", "task:<name>" or "key:<limit_key>" (a key
-- scope whose name holds *, ? or [ is a pattern: each matching key gets a limit of its own).

CREATE TABLE IF NOT EXISTS {schema}.flow_limits (
    scope               text PRIMARY KEY,
    -- At most rate_count starts in any window of rate_period_seconds; NULL: no rate.
    rate_count          integer CHECK (rate_count >= 1),
    rate_period_seconds double precision CHECK (rate_period_seconds > 0),
    -- At most this many jobs of the scope dispatched or running; NULL: no concurrency limit.
    concurrency         integer CHECK (concurrency >= 1),
    -- code (`@app.task`), config (the queuer's file) or admin (set at runtime).
    source              text NOT NULL,
    updated             timestamptz NOT NULL DEFAULT now(),
    CHECK ((rate_count IS NULL) = (rate_period_seconds IS NULL)),
    CHECK (rate_count IS NOT NULL OR concurrency IS NOT NULL)
);

-- Starts per scope in short buckets, written by the claim of a job dispatched under a rate
-- (jobs.rate_scopes) and read by the queuer's limited dispatch; pruned by it past the
-- longest period.
CREATE TABLE IF NOT EXISTS {schema}.flow_starts (
    scope  text NOT NULL,
    bucket timestamptz NOT NULL,
    starts integer NOT NULL,
    PRIMARY KEY (scope, bucket)
);

-- The key a job was enqueued with (NULL: none), whether the job must go through the
-- limited dispatch (a key, or a task with a limit), and the rate scopes its dispatch
-- spent (its claim records a start for each). Nullable or constant defaults: no rewrite.
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS limit_key text;
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS limited boolean NOT NULL DEFAULT false;
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS rate_scopes text[];
ALTER TABLE {schema}.jobs ADD CONSTRAINT jobs_limit_key_check CHECK (
    limit_key IS NULL OR (char_length(limit_key) BETWEEN 1 AND 200 AND limit_key !~ '[[:cntrl:]]')
) NOT VALID;

-- The ready index gains `limited` after the queue: the plain dispatch (dispatch_ready),
-- has_backlog and the postgres-only claim read `limited = false` in priority order and
-- never step over limited rows, however many wait. Built under a new name, then taking
-- the old one's place (see migration 014: an operator may build it beforehand with
-- CREATE INDEX CONCURRENTLY).
CREATE INDEX IF NOT EXISTS jobs_ready_016_idx
    ON {schema}.jobs (queue_name, limited, priority, run_at) WHERE status = 'queued';
DROP INDEX IF EXISTS {schema}.jobs_ready_idx;
ALTER INDEX {schema}.jobs_ready_016_idx RENAME TO jobs_ready_idx;

-- The limited dispatch's index: limited jobs grouped by queue, key and task, so it can
-- skip from one group to the next (a recursive scan) and take each group's most urgent
-- jobs up to its budget: a key at its limit never blocks another key. Plain jobs never
-- enter it.
CREATE INDEX IF NOT EXISTS jobs_limited_ready_idx
    ON {schema}.jobs (queue_name, (coalesce(limit_key, '')), task, priority, run_at)
    WHERE status = 'queued' AND limited;
