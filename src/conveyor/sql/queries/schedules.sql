-- Periodic jobs (see conveyor/scheduler.py and docs/scheduling.md).

-- name: upsert_schedules
-- Definitions from code or configuration, one JSON array in one statement. A changed cron
-- or time zone restarts the schedule from the next tick (next_run_at NULL); a pause set by
-- an operator survives a redeploy.
INSERT INTO {schema}.schedules AS s (
    name, task, cron, timezone, payload, queue_name, priority, max_attempts,
    timeout_seconds, lease_seconds, misfire, backfill_limit, source)
SELECT t.name, t.task, t.cron, t.timezone, t.payload, t.queue_name, t.priority,
       t.max_attempts, t.timeout_seconds, t.lease_seconds, t.misfire, t.backfill_limit,
       t.source
FROM jsonb_to_recordset(%(schedules)s::jsonb)
    AS t(name text, task text, cron text, timezone text, payload jsonb, queue_name text,
         priority int, max_attempts int, timeout_seconds float8, lease_seconds float8,
         misfire text, backfill_limit int, source text)
ON CONFLICT (name) DO UPDATE
SET task = excluded.task, cron = excluded.cron, timezone = excluded.timezone,
    payload = excluded.payload, queue_name = excluded.queue_name,
    priority = excluded.priority, max_attempts = excluded.max_attempts,
    timeout_seconds = excluded.timeout_seconds, lease_seconds = excluded.lease_seconds,
    misfire = excluded.misfire, backfill_limit = excluded.backfill_limit,
    source = excluded.source,
    next_run_at = CASE WHEN (s.cron, s.timezone) = (excluded.cron, excluded.timezone)
                       THEN s.next_run_at END,
    updated = now()
WHERE (s.task, s.cron, s.timezone, s.payload, s.queue_name, s.priority, s.max_attempts,
       s.timeout_seconds, s.lease_seconds, s.misfire, s.backfill_limit, s.source)
      IS DISTINCT FROM
      (excluded.task, excluded.cron, excluded.timezone, excluded.payload, excluded.queue_name,
       excluded.priority, excluded.max_attempts, excluded.timeout_seconds,
       excluded.lease_seconds, excluded.misfire, excluded.backfill_limit, excluded.source)
RETURNING name;

-- name: delete_unconfigured_schedules
-- Schedules the configuration defined once and no longer does.
DELETE FROM {schema}.schedules
WHERE source = %(source)s AND NOT (name = ANY(%(names)s::text[]))
RETURNING name;

-- name: due_schedules
-- Schedules with a tick due (or no tick computed yet), with PostgreSQL's clock: ticks are
-- reckoned from it, never from the queuer's.
SELECT name, task, cron, timezone, payload, queue_name, priority, max_attempts,
       timeout_seconds, lease_seconds, misfire, backfill_limit, next_run_at,
       now() AS now
FROM {schema}.schedules
WHERE NOT paused AND (next_run_at IS NULL OR next_run_at <= now())
ORDER BY name
LIMIT %(limit)s;

-- name: advance_schedule
-- The guard: only the queuer that still sees the tick it read moves the schedule on (a
-- racing one waits for this row's lock, then finds next_run_at changed and updates
-- nothing). The jobs of the ticks are inserted in the same transaction.
UPDATE {schema}.schedules
SET next_run_at = %(next_run_at)s,
    last_run_at = coalesce(%(last_run_at)s, last_run_at),
    last_job_id = coalesce(%(last_job_id)s, last_job_id),
    updated = now()
WHERE name = %(name)s AND NOT paused
  AND next_run_at IS NOT DISTINCT FROM %(expected)s
RETURNING name;

-- name: list_schedules
SELECT name, task, cron, timezone, payload, queue_name, priority, max_attempts,
       timeout_seconds, lease_seconds, misfire, backfill_limit, source, paused,
       next_run_at, last_run_at, last_job_id
FROM {schema}.schedules
WHERE (%(queues)s::text[] IS NULL OR queue_name = ANY(%(queues)s::text[]))
ORDER BY name;

-- name: lock_schedule
SELECT name, task, cron, timezone, payload, queue_name, priority, max_attempts,
       timeout_seconds, lease_seconds, misfire, backfill_limit, source, paused,
       next_run_at, last_run_at, last_job_id
FROM {schema}.schedules WHERE name = %(name)s
FOR UPDATE;

-- name: set_schedule_paused
-- A resume restarts from the next tick: ticks that fell while paused were not missed.
UPDATE {schema}.schedules
SET paused = %(paused)s,
    next_run_at = CASE WHEN %(paused)s THEN next_run_at END,
    updated = now()
WHERE name = %(name)s AND paused <> %(paused)s
RETURNING name;

-- name: record_schedule_trigger
UPDATE {schema}.schedules SET last_job_id = %(job_id)s, updated = now()
WHERE name = %(name)s
RETURNING name;
