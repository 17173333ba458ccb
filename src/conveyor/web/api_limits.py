"""The limits' part of the JSON API (see docs/scheduling.md, "Rate and concurrency
limits"): list them with their use now. Setting and removing one is the CLI's
(`conveyor admin limit set|remove`), audited like every admin write."""

from __future__ import annotations

from conveyor.admin.limits import LimitInfo
from conveyor.web.api_openapi import Operation

LIMIT_OPERATIONS: list[Operation] = [
    Operation(
        method="GET",
        path="/limits",
        operation_id="listLimits",
        tag="limits",
        summary="Global rate and concurrency limits: in flight, starts in the window, waiting.",
        role="viewer",
        response=list[LimitInfo],
        run=lambda c: c.admin.limits(),
    ),
]
