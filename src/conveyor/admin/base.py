"""The store and lanes every admin operation uses, input checks and the audit trail."""

from __future__ import annotations

import copy
import getpass
import math
import os
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from types import TracebackType
from typing import Self, TypeVar
from uuid import UUID

from conveyor.admin.errors import AdminError, AdminForbidden, AdminNotFound, AdminUnavailable
from conveyor.client import check_tenant_name
from conveyor.config import Settings
from conveyor.errors import (
    DatabaseUnavailable,
    EnqueueError,
    RedisUnavailable,
    StatementTimeout,
    reason,
)
from conveyor.ids import parse_job_id
from conveyor.lanes import Lanes
from conveyor.scope import UNRESTRICTED, Scope
from conveyor.store import Store
from conveyor.store.admin_writes import AuditScope
from conveyor.tasks import TaskRegistry, check_queue_name
from conveyor.vocabulary import LANES, LaneName

T = TypeVar("T")
MAX_LIMIT = 1000
MAX_IDS = 10_000
SAMPLE = 20


def default_actor(surface: str = "cli") -> str:
    """`cli:<os user>`: who an audit row names when a person ran the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in a bare container
        user = str(os.getuid())
    return f"{surface}:{user}"


@contextmanager
def outages() -> Iterator[None]:
    """An outage becomes AdminUnavailable, a statement stopped for time an AdminError."""
    try:
        yield
    except StatementTimeout as error:
        raise AdminError(f"the query took too long and was stopped ({reason(error)})") from None
    except (DatabaseUnavailable, RedisUnavailable) as error:
        raise AdminUnavailable(str(error)) from error


class AdminBase:
    """Holds the store and the lanes; the operations live in the mixins."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        lanes: Lanes | None = None,
        pool_size: int | None = None,
        tasks: TaskRegistry | None = None,
    ) -> None:
        self.settings = settings
        # The application's tasks, when this process loaded them (`--app`): an edited
        # replay is then validated against the task's payload model too.
        self.tasks: TaskRegistry = tasks or {}
        # The queuer LISTENs here; resume notifies it so a resumed queue starts at once.
        self.channel = f"{settings.database.schema_name}_jobs"
        self._store = store
        self._lanes = lanes
        self._owns_store = store is None
        self._owns_lanes = lanes is None
        # `database.pool_size` unless the caller knows better (a one-shot CLI command).
        self._pool_size = pool_size
        # What this admin may see and touch; every statement about jobs, queues, workers
        # or the audit log is filtered by it in SQL. See `scoped`.
        self.scope: Scope = UNRESTRICTED

    def scoped(self, scope: Scope) -> Self:
        """This admin limited to `scope` (a scoped API token or dashboard user), sharing
        the store and the lanes; closing it closes neither."""
        view = copy.copy(self)
        view.scope = scope
        view._owns_store = view._owns_lanes = False
        return view

    def audit_scope(self, tenants: list[str | None], queues: list[str]) -> AuditScope:
        """The `tenants` and `queues` an audit row records: those of the jobs the action
        touched; when it touched none, the caller's own scope (so a scoped caller still
        sees its no-op rows, and nobody else's show up)."""
        scope = self.scope.params
        return AuditScope(
            tenants=sorted(set(tenants), key=str) if tenants else scope["tenants"],
            queues=sorted(set(queues)) if queues else scope["queues"],
        )

    def refuse_tenant_scoped(self, what: str) -> None:
        """Queue-wide actions change every tenant's jobs: not for a tenant-scoped caller
        (checked before the queue is looked up, so the refusal says nothing about it)."""
        if self.scope.tenants is not None:
            raise AdminForbidden(
                f"{what} acts on every tenant's jobs in the queue; a tenant-scoped "
                "credential may not do it"
            )

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Open the store and the lanes not given (neither connects until first used)."""
        if self._store is None:
            self._store = await Store.open(self.settings, "admin", self._pool_size)
        if self._lanes is None:
            self._lanes = Lanes.open(self.settings)

    async def close(self) -> None:
        if self._store is not None and self._owns_store:
            await self._store.close()
            self._store = None
        if self._lanes is not None and self._owns_lanes:
            await self._lanes.close()
            self._lanes = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("use `async with Admin(settings) as admin:` (or await open())")
        return self._store

    @property
    def lanes(self) -> Lanes:
        if self._lanes is None:
            raise RuntimeError("use `async with Admin(settings) as admin:` (or await open())")
        return self._lanes

    # -- PostgreSQL ----------------------------------------------------------------------

    async def read(self, statement: Awaitable[T]) -> T:
        """One store call on its own pooled connection, outages translated."""
        with outages():
            return await statement

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Store]:
        """The store bound to one pooled connection, for several reads in a row (one
        checkout instead of one per statement); outages translated."""
        with outages():
            async with self.store.connection() as conn:
                yield self.store.bound_to(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Store]:
        """The store bound to one transaction; outages translated."""
        with outages():
            async with self.store.transaction() as tx:
                yield tx

    async def require_queue(self, store: Store, queue: str) -> None:
        """AdminNotFound unless the queue has a row, a job, or an entry in the settings,
        and is in scope (to a tenant-scoped caller: one of its tenants has a job in it)."""
        if not self.scope.allows_queue(queue):
            raise AdminNotFound(f"unknown queue {queue!r}")
        if self.scope.tenants is None and queue in self.settings.queues:
            return
        if not await store.queue_exists(queue, self.scope):
            raise AdminNotFound(f"unknown queue {queue!r}")


# -- input checks (each raises AdminError with the reason) -----------------------------------


def check_job_id(value: object) -> UUID:
    try:
        return parse_job_id(value)
    except ValueError as error:
        raise AdminError(str(error)) from None


def check_job_ids(values: Sequence[object]) -> list[UUID]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise AdminError("job ids must be given as a list")
    if not values:
        raise AdminError("no job ids given")
    if len(values) > MAX_IDS:
        raise AdminError(f"at most {MAX_IDS} job ids per call, not {len(values)}")
    return list(dict.fromkeys(check_job_id(value) for value in values))


def check_queue(value: object) -> str:
    if not isinstance(value, str):
        raise AdminError(f"queue name must be text, not {type(value).__name__}")
    try:
        return check_queue_name(value)
    except ValueError as error:
        raise AdminError(str(error)) from None


def check_tenant(value: object) -> str:
    try:
        return check_tenant_name(value)
    except EnqueueError as error:
        raise AdminError(str(error)) from None


def check_optional_queue(value: object) -> str | None:
    return None if value is None else check_queue(value)


def check_lane(value: object) -> LaneName | None:
    if value is None:
        return None
    for lane in LANES:
        if value == lane:
            return lane
    raise AdminError(f"lane must be one of {', '.join(LANES)}, not {value!r}")


def check_count(value: object, name: str, maximum: int = MAX_LIMIT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise AdminError(f"{name} must be a whole number from 1 to {maximum}, not {value!r}")
    return value


MAX_AGE_SECONDS = 100 * 365.25 * 86400


def check_seconds(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AdminError(f"{name} must be a number of seconds, not {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise AdminError(f"{name} must be a non-negative number of seconds, not {value!r}")
    if seconds > MAX_AGE_SECONDS:
        # PostgreSQL cannot subtract more than this from now(); say so instead of a 500.
        raise AdminError(f"{name} must be at most {MAX_AGE_SECONDS:.0f} seconds (100 years)")
    return seconds


def check_actor(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AdminError("actor must be a non-empty name (who is doing this, for the audit log)")
    if len(value) > 200:
        raise AdminError("actor must be at most 200 characters")
    return value.strip()


def check_text(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise AdminError(f"{name} must be non-empty text")
    if len(value) > 500:
        raise AdminError(f"{name} must be at most 500 characters")
    if "\x00" in value:  # PostgreSQL text cannot hold it: refuse here, not with a 500
        raise AdminError(f"{name} must not contain a NUL character")
    return value
