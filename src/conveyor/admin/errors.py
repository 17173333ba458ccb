"""Errors of the admin layer. Each carries a message fit to show an operator as is."""

from __future__ import annotations

from conveyor.errors import ConveyorError


class AdminError(ConveyorError, ValueError):
    """The request was refused before anything changed (bad input, or a state that does
    not allow the action). HTTP maps it to 400, the CLI to a one-line error."""


class AdminNotFound(AdminError, LookupError):
    """No such job or queue (HTTP 404)."""


class AdminConflict(AdminError):
    """The job or queue is in a state the action does not apply to (HTTP 409)."""


class AdminForbidden(AdminError):
    """The caller's role does not allow this change to this job (HTTP 403)."""


class AdminUnavailable(ConveyorError):
    """PostgreSQL (or, for Redis-only operations, Redis) did not answer (HTTP 503)."""


__all__ = [
    "AdminConflict",
    "AdminError",
    "AdminForbidden",
    "AdminNotFound",
    "AdminUnavailable",
]
