"""Schemathesis over every operation of the OpenAPI document: no input may cause a 500,
and every response matches the document.

Runs in-process against the ASGI app with an admin token, so every operation is reachable,
on fabricated rows so reads and actions have something to work on. Each operation gets
valid and invalid inputs, a bounded number of examples, no example database and no
deadline (each call is a real database round trip).

Schemathesis' own pytest integration (`schemathesis.pytest.from_fixture`) does not run
under pytest 9 (it sets `request.node._nodeid`, which pytest 9 removed), so the test
drives its documented Python API instead: one hypothesis run per operation, with
`Operation.as_strategy()`. Its pytest plugin still ends the app's lifespan (closing the
Admin) when each test ends.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error, response_schema_conformance

from conveyor.config import Settings
from conveyor.store.migrate import migrate
from conveyor.web.api import OPERATIONS
from conveyor.web.app import create_app
from tests.factories import add_job

TOKEN = "fuzz-admin-token-0123456789"
OUTAGE = re.compile(r'^\{"error":"(PostgreSQL|Redis) is unavailable\b')
EXAMPLES = int(os.environ.get("CONVEYOR_FUZZ_EXAMPLES", "25"))


def no_server_error(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """`not_a_server_error`, except for the documented 503 of a real outage. The servers
    are shared: another suite's fault test terminates every Conveyor backend, and the
    answer to that is a 503 saying so, not a bug. Any other 5xx still fails."""
    if response.status_code == 503 and OUTAGE.match(response.content.decode()):
        return None
    return not_a_server_error(ctx, response, case)


@dataclass(frozen=True)
class Target:
    schema: schemathesis.BaseSchema
    existing: dict[str, str]  # path parameters naming a real job and queue


@pytest.fixture
def target(settings_factory: Callable[..., Settings]) -> Target:
    config = settings_factory(**{"web.tokens": [{"name": "fuzz", "token": TOKEN, "role": "admin"}]})
    migrate(config.database.url, config.database.schema_name)
    with psycopg.connect(config.database.url, autocommit=True) as db:
        db.execute(f'SET search_path TO "{config.database.schema_name}"'.encode())
        for status in ("queued", "completed", "cancelled", "dead"):
            job = add_job(db, status=status)
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", create_app(config))
    return Target(schema, {"job_id": str(job), "queue": "q"})


@pytest.mark.parametrize(
    ("method", "path"),
    [(op.method, f"/api{op.path}") for op in OPERATIONS],
    ids=[f"{op.method} /api{op.path}" for op in OPERATIONS],
)
def test_no_input_causes_a_server_error(target: Target, method: str, path: str) -> None:
    operation = target.schema[path][method]
    # Fixed here, the header is never replaced by a generated one: every case is admitted.
    auth = {"Authorization": f"Bearer {TOKEN}"}
    strategies = [
        operation.as_strategy(mode, headers=auth)
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    ]
    # Random ids and names only ever meet 404s: also aim at a job and a queue that exist.
    real = {name: value for name, value in target.existing.items() if f"{{{name}}}" in path}
    if real:
        strategies.append(operation.as_strategy(headers=auth, path_parameters=real))
    cases = st.one_of(strategies)

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(
            checks=[no_server_error, response_schema_conformance],
        )

    fuzz()
