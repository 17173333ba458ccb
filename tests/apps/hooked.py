"""A test app with middleware, imported by a worker process as `tests.apps.hooked:app`:
the structured logging middleware, and one that refuses every job's first attempt."""

from __future__ import annotations

from typing import Any

from conveyor import Conveyor, JobContext, RetryPolicy
from conveyor.contrib.logging import LoggingMiddleware
from conveyor.middleware import Middleware


class RefusesFirstAttempt(Middleware):
    def before_attempt(self, job: JobContext) -> None:
        if job.attempt == 1:
            raise PermissionError("not on the first attempt")


app = Conveyor(middleware=[LoggingMiddleware()])
app.add_middleware(RefusesFirstAttempt())


@app.task(
    name="hooked.greet", queue="hooked", max_attempts=2, retry=RetryPolicy(base=0.05, cap=0.1)
)
def greet(payload: dict[str, Any]) -> str:
    return f"hello {payload['name']}"
