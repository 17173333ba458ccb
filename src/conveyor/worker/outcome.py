"""How one attempt ended: the log statuses the worker reports, and the Outcome it submits
(defined beside the `record_outcomes` statement that takes it)."""

from __future__ import annotations

from conveyor import vocabulary as v
from conveyor.store.work import Outcome, outcome_params

COMPLETED = v.LOG_COMPLETED
RETRY = v.LOG_FAILED
DEAD = v.LOG_DEAD
CANCELLED = v.LOG_CANCELLED
HANDED_BACK = v.LOG_HANDED_BACK
SNOOZED = v.LOG_SNOOZED


__all__ = [
    "CANCELLED",
    "COMPLETED",
    "DEAD",
    "HANDED_BACK",
    "RETRY",
    "SNOOZED",
    "Outcome",
    "outcome_params",
]
