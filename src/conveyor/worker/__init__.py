"""Workers: pop ids from the lanes, claim them in PostgreSQL, run handlers, report back."""

from conveyor.worker.runner import Worker, WorkerOptions

__all__ = ["Worker", "WorkerOptions"]
