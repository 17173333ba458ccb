"""Who may see what: the tenants and queues an API token or dashboard user is limited to.

A `Scope` travels with the authenticated caller into the admin layer, and from there into
every statement that reads or changes jobs, queues, workers or the audit log, as two
parameters: `tenants` and `queues` (NULL: unrestricted). The filtering happens in SQL, so
counts, pages and bulk actions never see a row outside the scope.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scope:
    tenants: frozenset[str] | None = None  # None: every tenant (and jobs without one)
    queues: frozenset[str] | None = None  # None: every queue

    @classmethod
    def of(cls, tenants: Iterable[str] | None = None, queues: Iterable[str] | None = None) -> Scope:
        return cls(
            None if tenants is None else frozenset(tenants),
            None if queues is None else frozenset(queues),
        )

    @property
    def unrestricted(self) -> bool:
        return self.tenants is None and self.queues is None

    def allows_queue(self, queue: str) -> bool:
        return self.queues is None or queue in self.queues

    def narrowed_to(self, tenant: str) -> Scope:
        """This scope limited to one tenant (a listing filter): nothing at all when the
        tenant is outside it, so a filter never widens what a caller sees."""
        inside = self.tenants is None or tenant in self.tenants
        return Scope(frozenset({tenant}) if inside else frozenset(), self.queues)

    @property
    def params(self) -> dict[str, Any]:
        """The statement parameters `%(tenants)s` and `%(queues)s` (sorted: stable plans)."""
        return {
            "tenants": None if self.tenants is None else sorted(self.tenants),
            "queues": None if self.queues is None else sorted(self.queues),
        }


UNRESTRICTED = Scope()
