-- Every claim paid for an entry in this index, but only two rare statements use it (the
-- supervisor rescuing a dead child's jobs, pruning old worker rows), and both look among
-- running jobs only, a set bounded by the workers' total concurrency that
-- jobs_running_idx already covers.
DROP INDEX IF EXISTS {schema}.jobs_running_worker_idx;
