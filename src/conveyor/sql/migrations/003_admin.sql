-- Indexes for the admin layer: job listings, dead-letter operations, dashboard figures.
--
-- What an index on jobs costs the hot path: every status change is a non-HOT update
-- (status appears in index predicates), and a non-HOT update adds an entry to every
-- index whose predicate the new row version satisfies. A job passes through
-- queued -> dispatched -> running (plus one version per lease renewal) -> completed, so
-- a full index on jobs would take four or more entries per job. Each index below is
-- partial, so it takes at most the entries it says.

-- The listing index: keyset pages of (created, id) per queue and status, the per-queue
-- dead count, and the purge and replay of dead jobs by queue. It holds rows at rest only:
-- a job enters it when it is enqueued and once more when it finishes (and again each
-- time it goes back to queued: a retry, a rescue, a pause). The dispatched and running
-- versions (the buffer in Redis and the jobs on workers, both bounded by configuration)
-- never enter it; the admin queries read jobs_dispatched_idx and jobs_running_idx for
-- those states.
-- It also serves the dead-letter queue of one queue ((queue_name, 'dead') is a prefix
-- of it). Its leading column lets the admin queries list the distinct queues with a
-- skip scan, one probe per queue.
CREATE INDEX IF NOT EXISTS jobs_admin_list_idx
    ON {schema}.jobs (queue_name, status, created, id)
    WHERE status IN ('queued', 'completed', 'dead', 'cancelled');

-- The dead-letter queue across all queues: newest-first listing, count, replay and purge
-- of every dead job (by queue, the listing index above serves). A job enters it only
-- when it dies, so the hot path of healthy jobs never touches it.
CREATE INDEX IF NOT EXISTS jobs_dead_idx
    ON {schema}.jobs (created, id)
    WHERE status = 'dead';
