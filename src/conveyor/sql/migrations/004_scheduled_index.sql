-- With many jobs scheduled for later (delayed sends, retry backoff), the priority-ordered
-- ready index makes each dispatch pass and backlog check walk past every future job.
-- This index answers "anything due in this queue?" directly; the planner picks it when
-- few queued jobs are due and the priority index when most are. It costs one index entry
-- per enqueue and none on later transitions (queued rows only).
CREATE INDEX IF NOT EXISTS jobs_due_idx
    ON {schema}.jobs (queue_name, run_at) WHERE status = 'queued';
