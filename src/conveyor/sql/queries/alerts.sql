-- name: alert_metrics
-- The rules' history: every queue and lane minute that started within `window` seconds,
-- with its age so Python compares durations, never clocks.
SELECT m.queue_name AS queue_name,
       m.lane AS lane,
       extract(epoch FROM now() - m.bucket)::float8 AS age_seconds,
       m.waiting AS waiting,
       m.completed AS completed,
       m.failed AS failed,
       m.dead AS dead,
       m.oldest_wait AS oldest_wait
FROM {schema}.metrics_minutes m
WHERE m.bucket >= now() - %(window)s * interval '1 second'
ORDER BY m.queue_name, m.bucket, m.lane;

-- name: alert_live_workers
-- What live workers say about themselves (a heartbeat within dead_after, not stopped).
SELECT w.id AS id,
       w.queues AS queues,
       w.postgres_only AS postgres_only,
       w.breakers_open AS breakers_open
FROM {schema}.workers w
WHERE w.stopped IS NULL
  AND w.last_heartbeat >= now() - %(dead_after)s * interval '1 second';

-- name: apply_alerts
-- One evaluation in one statement: refresh the alerts that still fire (and queue a repeat
-- notification where repeat_interval has passed), fire the new ones, resolve the firing
-- ones not found any more, and queue one notification per transition and receiver. A
-- crash leaves all of it or none; the partial unique index stops a second firing row.
WITH found AS (
    SELECT f.rule, f.queue_name, f.severity, f.summary, f.value, f.threshold
    FROM unnest(%(rules)s::text[], %(queues)s::text[], %(severities)s::text[],
                %(summaries)s::text[], %(values)s::float8[], %(thresholds)s::float8[])
        AS f(rule, queue_name, severity, summary, value, threshold)
),
still AS (
    UPDATE {schema}.alerts a
    SET summary = f.summary, value = f.value, threshold = f.threshold,
        severity = f.severity, updated = now(),
        last_notified_at = CASE
            WHEN %(repeat)s::float8 > 0
             AND a.last_notified_at <= now() - %(repeat)s::float8 * interval '1 second'
            THEN now() ELSE a.last_notified_at END
    FROM found f
    WHERE a.state = {ALERT_FIRING} AND a.rule = f.rule AND a.queue_name = f.queue_name
    RETURNING a.id AS id, a.last_notified_at = now() AS repeated
),
fired AS (
    INSERT INTO {schema}.alerts AS a (rule, queue_name, severity, state, summary, value, threshold)
    SELECT f.rule, f.queue_name, f.severity, {ALERT_FIRING}, f.summary, f.value, f.threshold
    FROM found f
    WHERE NOT EXISTS (
        SELECT 1 FROM {schema}.alerts e
        WHERE e.state = {ALERT_FIRING} AND e.rule = f.rule AND e.queue_name = f.queue_name)
    ON CONFLICT (rule, queue_name) WHERE state = {ALERT_FIRING} DO NOTHING
    RETURNING a.id AS id
),
resolved AS (
    UPDATE {schema}.alerts a
    SET state = {ALERT_RESOLVED}, resolved_at = now(), updated = now()
    WHERE a.state = {ALERT_FIRING}
      AND NOT EXISTS (
        SELECT 1 FROM found f WHERE f.rule = a.rule AND f.queue_name = a.queue_name)
    RETURNING a.id AS id
),
transitions AS (
    SELECT id, {NOTIFY_FIRED} AS transition FROM fired
    UNION ALL SELECT id, {NOTIFY_RESOLVED} FROM resolved
    UNION ALL SELECT id, {NOTIFY_REPEAT} FROM still WHERE repeated
),
outbox AS (
    INSERT INTO {schema}.alert_notifications (alert_id, transition, receiver)
    SELECT t.id, t.transition, r.name
    FROM transitions t CROSS JOIN unnest(%(receivers)s::text[]) AS r(name)
    RETURNING id
)
SELECT (SELECT count(*) FROM fired)::int AS fired,
       (SELECT count(*) FROM resolved)::int AS resolved,
       (SELECT count(*) FROM still WHERE repeated)::int AS repeated,
       (SELECT count(*) FROM outbox)::int AS notifications;

-- name: claim_alert_notifications
-- Up to `limit` notifications that are due, each after every earlier one of its alert and
-- receiver has been delivered or given up (a resolve never overtakes its trigger). The
-- claim moves next_attempt_at on by `lease`: a sender that dies mid-POST is retried then.
WITH due AS (
    SELECT n.id
    FROM {schema}.alert_notifications n
    WHERE n.delivered_at IS NULL AND n.gave_up_at IS NULL AND n.next_attempt_at <= now()
      AND NOT EXISTS (
        SELECT 1 FROM {schema}.alert_notifications e
        WHERE e.alert_id = n.alert_id AND e.receiver = n.receiver AND e.id < n.id
          AND e.delivered_at IS NULL AND e.gave_up_at IS NULL)
    ORDER BY n.next_attempt_at, n.id
    LIMIT %(limit)s
    FOR UPDATE OF n SKIP LOCKED
)
UPDATE {schema}.alert_notifications n
SET attempts = n.attempts + 1,
    next_attempt_at = now() + %(lease)s * interval '1 second'
FROM due, {schema}.alerts a
WHERE n.id = due.id AND a.id = n.alert_id
RETURNING n.id AS id,
          n.attempts AS attempts,
          n.transition AS transition,
          n.receiver AS receiver,
          a.id AS alert_id,
          a.rule AS rule,
          a.queue_name AS queue_name,
          a.severity AS severity,
          a.state AS state,
          a.summary AS summary,
          a.value AS value,
          a.threshold AS threshold,
          a.fired_at AS fired_at,
          a.resolved_at AS resolved_at,
          -- The webhook's signed timestamp: PostgreSQL's clock, like every other time.
          floor(extract(epoch FROM now()))::bigint AS claimed_epoch;

-- name: mark_alert_notification_delivered
-- Guarded by the attempt that claimed it: a late answer to an earlier claim changes nothing.
UPDATE {schema}.alert_notifications
SET delivered_at = now(), last_error = NULL
WHERE id = %(id)s AND attempts = %(attempts)s AND delivered_at IS NULL AND gave_up_at IS NULL;

-- name: reschedule_alert_notification
-- A failed attempt: try again after backoff * 2^(attempts - 1), at most `cap`; after
-- max_attempts, give up and keep the last error for the alerts page.
UPDATE {schema}.alert_notifications
SET last_error = %(error)s,
    next_attempt_at = now()
        + least(%(cap)s::float8, %(backoff)s::float8 * power(2, attempts - 1))
          * interval '1 second',
    gave_up_at = CASE WHEN attempts >= %(max_attempts)s THEN now() END
WHERE id = %(id)s AND attempts = %(attempts)s AND delivered_at IS NULL AND gave_up_at IS NULL;

-- name: admin_alerts
-- Alerts for the admin layer, firing first, then newest first, each with its
-- notifications. A queue-scoped caller sees its queues' alerts only; a tenant-scoped one
-- none (a queue's figures count every tenant's jobs).
SELECT a.id AS id,
       a.rule AS rule,
       a.queue_name AS queue_name,
       a.severity AS severity,
       a.state AS state,
       a.summary AS summary,
       a.value AS value,
       a.threshold AS threshold,
       a.fired_at AS fired_at,
       a.resolved_at AS resolved_at,
       a.last_notified_at AS last_notified_at,
       extract(epoch FROM coalesce(a.resolved_at, now()) - a.fired_at)::float8
           AS duration_seconds,
       coalesce((
           SELECT jsonb_agg(jsonb_build_object(
                      'transition', n.transition, 'receiver', n.receiver,
                      'attempts', n.attempts, 'created', n.created,
                      'delivered_at', n.delivered_at, 'gave_up_at', n.gave_up_at,
                      'next_attempt_at', n.next_attempt_at, 'last_error', n.last_error)
                      ORDER BY n.id)
           FROM {schema}.alert_notifications n WHERE n.alert_id = a.id), '[]'::jsonb)
           AS notifications
FROM {schema}.alerts a
WHERE (%(state)s::text IS NULL OR a.state = %(state)s::text)
  AND %(tenants)s::text[] IS NULL
  AND (%(queues)s::text[] IS NULL OR a.queue_name = ANY(%(queues)s::text[]))
ORDER BY a.state = {ALERT_FIRING} DESC, a.fired_at DESC, a.id DESC
LIMIT %(limit)s;

-- name: firing_alert_counts
-- The dashboard banner on every page: one probe of alerts_firing_idx.
SELECT count(*)::int AS firing,
       (count(*) FILTER (WHERE a.severity = {SEVERITY_CRITICAL}))::int AS critical
FROM {schema}.alerts a
WHERE a.state = {ALERT_FIRING}
  AND %(tenants)s::text[] IS NULL
  AND (%(queues)s::text[] IS NULL OR a.queue_name = ANY(%(queues)s::text[]));

-- name: prune_alerts
-- Resolved alerts past retention, with their notifications (ON DELETE CASCADE); a firing
-- one is kept however old. Bounded, as the evaluation runs it every pass.
DELETE FROM {schema}.alerts
WHERE id IN (
    SELECT a.id FROM {schema}.alerts a
    WHERE a.state = {ALERT_RESOLVED}
      AND a.resolved_at < now() - %(retention)s * interval '1 second'
    LIMIT %(limit)s
);
