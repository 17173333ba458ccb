"""The examples in examples/ run: each endpoint writes its order and enqueues its job in
one transaction, against the real PostgreSQL (FastAPI in process, Django in a subprocess)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from conveyor.config import Settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example_env(settings: Settings) -> dict[str, str]:
    return {
        "DATABASE_URL": settings.database.url,
        "DATABASE_SCHEMA": settings.database.schema_name,
        "REDIS_URL": settings.redis.url,
        "REDIS_KEY_PREFIX": settings.redis.key_prefix,
        # The example's own table goes into the test's schema, dropped with it.
        "SHOP_SCHEMA": settings.database.schema_name,
    }


def jobs_and_orders(db: psycopg.Connection[Any]) -> tuple[list[Any], list[Any]]:
    jobs = db.execute(b"SELECT task, payload FROM jobs").fetchall()
    orders = db.execute(b"SELECT id, email FROM orders").fetchall()
    return jobs, orders


async def test_fastapi_example(
    settings: Settings, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in example_env(settings).items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(
        "fastapi_example", EXAMPLES / "fastapi_app" / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # SQLAlchemy and FastAPI resolve the module's annotations through sys.modules.
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    app = module.app
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        response = await http.post("/orders", json={"email": "ada@example.com", "total_cents": 5})
        assert response.status_code == 201, response.text
        refused = await http.post("/orders", json={"email": "ada@example.com", "total_cents": 0})
        assert refused.status_code == 422
    body = response.json()
    jobs, orders = jobs_and_orders(db)
    assert orders == [(body["order_id"], "ada@example.com")]
    assert jobs == [
        ("shop.send_receipt", {"order_id": body["order_id"], "email": "ada@example.com"})
    ]


DJANGO_REQUEST = """
import json
from django.test import Client
response = Client().post("/orders", {"email": "bob@example.com", "total_cents": 7},
                         content_type="application/json")
print(json.dumps({"status": response.status_code, "body": json.loads(response.content)}))
"""


def test_django_example(settings: Settings, db: psycopg.Connection[Any]) -> None:
    project = EXAMPLES / "django_app"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "DJANGO_"))},
        **example_env(settings),
        "PYTHONPATH": os.pathsep.join([str(project), *sys.path]),
        "PYTHONWARNINGS": "error",
    }

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    manage("migrate", "--noinput", "shop")
    result = json.loads(manage("shell", "-c", DJANGO_REQUEST).strip().splitlines()[-1])
    assert result["status"] == 201, result
    jobs, orders = jobs_and_orders(db)
    order_id = result["body"]["order_id"]
    assert orders == [(order_id, "bob@example.com")]
    assert jobs == [("shop.send_receipt", {"order_id": order_id, "email": "bob@example.com"})]
