"""A test app whose handlers return results: worker subprocesses import it as
`tests.apps.results:app` (settings from the environment the test sets)."""

from __future__ import annotations

from typing import Any

import redis

from conveyor import Conveyor

app = Conveyor()


@app.task(name="add", queue="results", max_attempts=1)
async def add(payload: dict[str, Any]) -> dict[str, Any]:
    return {"sum": payload["a"] + payload["b"], "ssn": payload.get("ssn"), "items": [1, "two"]}


@app.task(name="add_sync", queue="results", max_attempts=1)
def add_sync(payload: dict[str, Any]) -> int:
    return int(payload["a"] + payload["b"])


@app.task(name="nothing", queue="results", max_attempts=1)
def nothing(payload: Any) -> None:
    return None


@app.task(name="fails", queue="results", max_attempts=2)
def fails(payload: dict[str, Any]) -> None:
    raise ValueError(f"no such account: {payload['account']}")


@app.task(name="unserialisable", queue="results", max_attempts=3)
def unserialisable(payload: Any) -> object:
    return {"handle": object()}


@app.task(name="oversized", queue="results", max_attempts=3)
def oversized(payload: dict[str, Any]) -> str:
    return "x" * int(payload["chars"])


@app.task(name="released", queue="results", max_attempts=1)
def released(payload: dict[str, Any]) -> dict[str, str]:
    """Returns once the test pushes to the payload's Redis key (or after 60 s)."""
    client = redis.Redis.from_url(app.settings.redis.url, socket_timeout=90)
    try:
        popped = client.blpop([payload["key"]], timeout=60)
    finally:
        client.close()
    return {"released": "yes" if popped else "no"}
