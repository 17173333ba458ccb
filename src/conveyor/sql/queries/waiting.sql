-- Waiting for a job to end (app.wait, app.await_job; store/waiting.py). The waiter
-- LISTENs first, then marks the job awaited, so that its end, from then on, is announced
-- by the jobs_awaited_ended trigger (migration 018) on "<schema>_job_ended".

-- name: listen_for_job_ends
-- The channel is filled in as a quoted identifier by store/waiting.py: LISTEN takes no
-- parameters.
LISTEN {channel};

-- name: mark_job_awaited
-- Not a transition (the status is untouched, and so is `updated`, which retention reads):
-- only a job that has not ended yet is marked, and the row it returns is the newest
-- version, read after any end committed meanwhile. No row: the job has ended (or is gone),
-- and read_job_end says which.
UPDATE {schema}.jobs SET awaited = true
WHERE id = %(id)s AND status NOT IN ({COMPLETED}, {DEAD}, {CANCELLED}, {EXPIRED})
RETURNING id, status, result, result_error, last_error, attempt, max_attempts,
          NULL::text AS final_message;

-- name: read_job_end
-- final_message: the newest job_logs row's message (its rows found by job_logs_job_idx): how
-- the job ended also when that end wrote no last_error (a cancel, an expiry).
SELECT j.id, j.status, j.result, j.result_error, j.last_error, j.attempt, j.max_attempts,
       (SELECT l.log_message FROM {schema}.job_logs l
        WHERE l.job_id = j.id ORDER BY l.id DESC LIMIT 1) AS final_message
FROM {schema}.jobs j WHERE j.id = %(id)s;
