"""The names every layer shares: job statuses, attempt outcomes, lanes and their bounds.

Python imports them from here, and every named SQL statement receives them as tokens
(`{QUEUED}`, `{HIGH_PRIORITY_MAX}`, ...) that `store.queries` renders at load time, so a
status or a lane boundary is spelt in exactly one place. Migrations are history and keep
their literals; a test checks those literals against this module.
"""

from __future__ import annotations

from typing import Final, Literal

# -- job statuses (jobs.status) ----------------------------------------------------------
QUEUED: Final = "queued"
DISPATCHED: Final = "dispatched"
RUNNING: Final = "running"
COMPLETED: Final = "completed"
DEAD: Final = "dead"
CANCELLED: Final = "cancelled"
EXPIRED: Final = "expired"  # not started before its deadline (expires_at); never ran
WAITING: Final = "waiting"  # its parents (depends_on) have not all ended; see docs/workflows.md
STATUSES: Final = (QUEUED, DISPATCHED, RUNNING, COMPLETED, DEAD, CANCELLED, EXPIRED, WAITING)
TERMINAL: Final = (COMPLETED, DEAD, CANCELLED, EXPIRED)
# Shown, never stored: a queued job waiting out its retry backoff.
RETRY_SCHEDULED: Final = "retry_scheduled"

# -- batch states (docs/batches.md): shown, never stored; read from the batch's columns --
BATCH_OPEN: Final = "open"  # its `with app.batch()` block is still adding jobs
BATCH_RUNNING: Final = "running"  # sealed, some jobs not ended yet
BATCH_SUCCEEDED: Final = "succeeded"  # finished, every job completed
BATCH_FAILED: Final = "failed"  # finished, at least one job dead, cancelled or expired
BATCH_STATES: Final = (BATCH_OPEN, BATCH_RUNNING, BATCH_SUCCEEDED, BATCH_FAILED)

# -- attempt outcomes (job_logs.status) --------------------------------------------------
LOG_COMPLETED: Final = "completed"
LOG_FAILED: Final = "failed"  # the attempt failed; the job is queued again with a backoff
LOG_DEAD: Final = "dead"
LOG_LOST: Final = "lost"  # rescued: the worker or its lease was lost
LOG_CANCELLED: Final = "cancelled"
LOG_RETRIED: Final = "retried"  # an operator sent a dead or failed job back to the queue
LOG_HANDED_BACK: Final = "handed_back"  # shutdown interrupted it; the attempt does not count
LOG_SNOOZED: Final = "snoozed"  # the handler asked to run later; the attempt does not count
LOG_EXPIRED: Final = "expired"  # its deadline passed before any worker started it
LOG_STATUSES: Final = (
    LOG_COMPLETED,
    LOG_FAILED,
    LOG_DEAD,
    LOG_LOST,
    LOG_CANCELLED,
    LOG_RETRIED,
    LOG_HANDED_BACK,
    LOG_SNOOZED,
    LOG_EXPIRED,
)

# -- workflows (jobs.on_parent_failure): what a parent that did not complete does to its
# waiting child; see docs/workflows.md.
ON_FAILURE_CANCEL: Final = "cancel"  # the child is cancelled (and so are its own children)
ON_FAILURE_RUN: Final = "run"  # the parent counts as ended; the child runs without its result
ON_PARENT_FAILURE: Final = (ON_FAILURE_CANCEL, ON_FAILURE_RUN)

# -- lanes -------------------------------------------------------------------------------
LaneName = Literal["high", "normal", "low"]
HIGH: Final[LaneName] = "high"
NORMAL: Final[LaneName] = "normal"
LOW: Final[LaneName] = "low"
LANES: Final[tuple[LaneName, ...]] = (HIGH, NORMAL, LOW)
# Lower number is more urgent, as in the specification's routing table.
HIGH_PRIORITY_MAX: Final = 50
NORMAL_PRIORITY_MAX: Final = 150
MIN_PRIORITY: Final = 0
MAX_PRIORITY: Final = 1000


# -- alerts (alerts.state, alert_notifications.transition) ----------------------------------
ALERT_FIRING: Final = "firing"
ALERT_RESOLVED: Final = "resolved"
ALERT_STATES: Final = (ALERT_FIRING, ALERT_RESOLVED)
# What a notification announces: the alert fired, resolved, or is still firing (repeat).
NOTIFY_FIRED: Final = "fired"
NOTIFY_RESOLVED: Final = "resolved"
NOTIFY_REPEAT: Final = "repeat"
NOTIFY_TRANSITIONS: Final = (NOTIFY_FIRED, NOTIFY_RESOLVED, NOTIFY_REPEAT)
SEVERITY_WARNING: Final = "warning"
SEVERITY_CRITICAL: Final = "critical"
SEVERITIES: Final = (SEVERITY_WARNING, SEVERITY_CRITICAL)

# -- flow limits (flow_limits.scope is "<kind>:<name>"; docs/scheduling.md) ---------------
SCOPE_QUEUE: Final = "queue"
SCOPE_TASK: Final = "task"
SCOPE_KEY: Final = "key"
SCOPE_KINDS: Final = (SCOPE_QUEUE, SCOPE_TASK, SCOPE_KEY)
# Who wrote a limit (flow_limits.source): the app's `@app.task`, the configuration file,
# or an operator at runtime (which code and configuration never overwrite).
LIMIT_FROM_CODE: Final = "code"
LIMIT_FROM_CONFIG: Final = "config"
LIMIT_FROM_ADMIN: Final = "admin"
LIMIT_SOURCES: Final = (LIMIT_FROM_CODE, LIMIT_FROM_CONFIG, LIMIT_FROM_ADMIN)
# Width of a flow_starts bucket in seconds. A rate's window counts every bucket that
# overlaps it, so a window may over-count by one bucket's starts, never under-count.
START_BUCKET_SECONDS: Final = 0.05


def lane_for_priority(priority: int) -> LaneName:
    if priority <= HIGH_PRIORITY_MAX:
        return HIGH
    if priority <= NORMAL_PRIORITY_MAX:
        return NORMAL
    return LOW


def sql_tokens() -> dict[str, str]:
    """What each `{TOKEN}` in a named statement becomes: SQL literals, never parameters,
    so partial-index predicates still match and plans stay the same."""
    tokens = {name.upper(): f"'{name}'" for name in STATUSES}
    tokens.update({f"LOG_{name.upper()}": f"'{name}'" for name in LOG_STATUSES})
    tokens.update({f"LANE_{lane.upper()}": f"'{lane}'" for lane in LANES})
    tokens.update({f"ALERT_{name.upper()}": f"'{name}'" for name in ALERT_STATES})
    tokens.update({f"NOTIFY_{name.upper()}": f"'{name}'" for name in NOTIFY_TRANSITIONS})
    tokens.update({f"SEVERITY_{name.upper()}": f"'{name}'" for name in SEVERITIES})
    tokens.update({f"SCOPE_{kind.upper()}": f"'{kind}:'" for kind in SCOPE_KINDS})
    tokens.update({f"LIMIT_FROM_{name.upper()}": f"'{name}'" for name in LIMIT_SOURCES})
    tokens.update({f"ON_FAILURE_{name.upper()}": f"'{name}'" for name in ON_PARENT_FAILURE})
    tokens["START_BUCKET_SECONDS"] = str(START_BUCKET_SECONDS)
    tokens["HIGH_PRIORITY_MAX"] = str(HIGH_PRIORITY_MAX)
    tokens["NORMAL_PRIORITY_MAX"] = str(NORMAL_PRIORITY_MAX)
    return tokens
