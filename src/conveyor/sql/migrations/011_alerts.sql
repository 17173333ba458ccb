-- Alerts: each rule's firing -> resolved lifecycle with its history, and an outbox of the
-- notifications each transition owes to each receiver.

-- One row per firing: it is inserted when the rule fires and resolved in place, so the
-- table is the history. queue_name is '' for a system-wide rule (postgres_only,
-- redis_failover), never NULL, so the unique index below sees it.
CREATE TABLE IF NOT EXISTS {schema}.alerts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule             text NOT NULL,
    queue_name       text NOT NULL DEFAULT '',
    severity         text NOT NULL CHECK (severity IN ('warning', 'critical')),
    state            text NOT NULL DEFAULT 'firing' CHECK (state IN ('firing', 'resolved')),
    summary          text NOT NULL,
    value            double precision,
    threshold        double precision,
    fired_at         timestamptz NOT NULL DEFAULT now(),
    resolved_at      timestamptz,
    -- When the last notification (fired or repeat) was queued: the repeat clock.
    last_notified_at timestamptz NOT NULL DEFAULT now(),
    updated          timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'resolved') = (resolved_at IS NOT NULL))
);
-- At most one firing alert per rule and queue: two leaders (or a pass run twice) cannot
-- fire it twice, and this is the index the evaluation's lookups use.
CREATE UNIQUE INDEX IF NOT EXISTS alerts_firing_idx
    ON {schema}.alerts (rule, queue_name) WHERE state = 'firing';
-- The alerts page and /api/alerts: newest first.
CREATE INDEX IF NOT EXISTS alerts_fired_at_idx ON {schema}.alerts (fired_at DESC, id DESC);

-- The outbox: written in the statement that changes the alert, so a crash can neither lose
-- a notification nor queue one twice; the delivery pass claims due rows and POSTs them.
CREATE TABLE IF NOT EXISTS {schema}.alert_notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id        bigint NOT NULL REFERENCES {schema}.alerts (id) ON DELETE CASCADE,
    transition      text NOT NULL CHECK (transition IN ('fired', 'resolved', 'repeat')),
    receiver        text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    gave_up_at      timestamptz,
    last_error      text,
    created         timestamptz NOT NULL DEFAULT now()
);
-- The delivery pass: rows still owed, in the order they are due.
CREATE INDEX IF NOT EXISTS alert_notifications_due_idx
    ON {schema}.alert_notifications (next_attempt_at, id)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX IF NOT EXISTS alert_notifications_alert_idx
    ON {schema}.alert_notifications (alert_id, receiver, id);
