"""Global limits declared in code: `@app.task(rate_limit=..., concurrency_limit=...)`.

The app only records them on its tasks; `conveyor worker` (which imports the app) writes
them to the `flow_limits` table when it starts, where the queuers, which never import the
app, find them (see conveyor/limited_dispatch.py).
"""

from __future__ import annotations

from conveyor.config import Settings
from conveyor.limits import scope
from conveyor.store.limits import SyncLimits
from conveyor.tasks import Task
from conveyor.vocabulary import LIMIT_FROM_CODE, SCOPE_TASK


class TaskLimits:
    settings: Settings
    tasks: dict[str, Task]

    def sync_limits(self) -> list[str]:
        """Write this app's task limits to `flow_limits`, and drop the code-written limits
        of its tasks that no longer declare one (another app's tasks are left alone).
        Return the scopes written or dropped."""
        limits = [task.limit for task in self.tasks.values() if task.limit is not None]
        unlimited = [
            scope(SCOPE_TASK, task.name) for task in self.tasks.values() if task.limit is None
        ]
        if not limits and not unlimited:
            return []
        with SyncLimits.open(self.settings, "client", size=1) as statements:
            return statements.write_limits(limits, LIMIT_FROM_CODE, drop=unlimited)
