"""How one attempt ended, in the shape the `record_outcomes` statement takes."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import orjson

from conveyor import vocabulary as v

COMPLETED = v.LOG_COMPLETED
RETRY = v.LOG_FAILED
DEAD = v.LOG_DEAD
CANCELLED = v.LOG_CANCELLED
HANDED_BACK = v.LOG_HANDED_BACK


@dataclass(frozen=True)
class Outcome:
    job_id: UUID
    token: int
    log_status: str
    duration: float
    error: str | None = None
    traceback: str | None = None
    retry_in: float | None = None
    queue: str = ""
    task: str = ""

    @property
    def job_status(self) -> str:
        return {
            COMPLETED: v.COMPLETED,
            RETRY: v.QUEUED,
            DEAD: v.DEAD,
            CANCELLED: v.CANCELLED,
            HANDED_BACK: v.QUEUED,
        }[self.log_status]

    @property
    def attempt_delta(self) -> int:
        return -1 if self.log_status == HANDED_BACK else 0


def outcome_params(outcomes: list[Outcome]) -> dict[str, str]:
    """The `record_outcomes` parameter: the whole batch as one JSON array."""
    records = [
        {
            "id": o.job_id,
            "token": o.token,
            "status": o.job_status,
            "retry_in": o.retry_in,
            "error": o.error,
            "traceback": o.traceback,
            "duration": o.duration,
            "log_status": o.log_status,
            "attempt_delta": o.attempt_delta,
        }
        for o in outcomes
    ]
    return {"outcomes": orjson.dumps(records).decode()}
