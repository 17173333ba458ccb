-- name: create_batch
-- The batch row, written in the transaction that will enqueue its jobs (docs/batches.md).
INSERT INTO {schema}.batches (id, description, on_complete, on_success)
VALUES (%(id)s, %(description)s, %(on_complete)s::jsonb, %(on_success)s::jsonb)
RETURNING id AS id;

-- name: add_to_batch
-- Run before insert_jobs in the same transaction: a sealed (or unknown) batch returns no
-- row, and the jobs are then not written. Holds the batch row until commit, so the
-- counts a job's end reads include every job enqueued with it.
UPDATE {schema}.batches
SET total = total + %(added)s, pending = pending + %(added)s
WHERE id = %(id)s AND sealed IS NULL
RETURNING id AS id;

-- name: seal_batch
-- No job joins afterwards; when nothing is pending (every job already ended, or there
-- was none), the batches_finished trigger (migration 020) finishes it in this statement.
UPDATE {schema}.batches SET sealed = now()
WHERE id = %(id)s AND sealed IS NULL
RETURNING id AS id;

-- name: get_batch
SELECT b.id AS id, b.description AS description, b.created AS created, b.sealed AS sealed,
       b.finished AS finished, b.total AS total, b.pending AS pending,
       b.succeeded AS succeeded, b.failed AS failed,
       b.on_complete ->> 'task' AS on_complete_task, b.on_success ->> 'task' AS on_success_task,
       b.complete_job_id AS complete_job_id, b.success_job_id AS success_job_id
FROM {schema}.batches b
WHERE b.id = %(id)s;

-- name: list_batches
-- Newest first (batches_created_idx); `unfinished` keeps only batches still running.
SELECT b.id AS id, b.description AS description, b.created AS created, b.sealed AS sealed,
       b.finished AS finished, b.total AS total, b.pending AS pending,
       b.succeeded AS succeeded, b.failed AS failed,
       b.on_complete ->> 'task' AS on_complete_task, b.on_success ->> 'task' AS on_success_task,
       b.complete_job_id AS complete_job_id, b.success_job_id AS success_job_id
FROM {schema}.batches b
WHERE NOT %(unfinished)s OR b.finished IS NULL
ORDER BY b.created DESC, b.id DESC
LIMIT %(limit)s;

-- name: batch_jobs
-- A batch's jobs by id (jobs_batch_idx): enqueue order to the millisecond (uuid7).
SELECT j.id AS id, j.task AS task, j.queue_name AS queue_name, j.status AS status,
       j.attempt AS attempt, j.max_attempts AS max_attempts, j.last_error AS last_error,
       j.updated AS updated
FROM {schema}.jobs j
WHERE j.batch_id = %(id)s
ORDER BY j.id
LIMIT %(limit)s;

-- name: prune_batches
-- The pruner's: finished batches past retention (batches_finished_idx). Their jobs were
-- kept no longer than this, so the figures of a batch outlive its rows.
DELETE FROM {schema}.batches
WHERE finished < now() - %(retention)s * interval '1 second';
