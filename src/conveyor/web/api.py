"""The JSON admin API (built on the admin layer). Placeholder until the API lands."""

from __future__ import annotations

from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    return []
