"""The web's defences found missing by the audit of issue 11: revocable sessions, login
throttling, the readiness probe, allowed hosts and the small hardening items. Each test is
named after its finding and failed before the fix."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest

from conveyor.config import Settings
from conveyor.store.migrate import migrate
from conveyor.web.app import create_app
from conveyor.web.auth import hash_password
from tests.conftest import wait_until
from tests.test_dashboard import csrf_of

PASSWORD = "correct horse battery staple"
TOKEN = "operator-token-0123456789"
SECRET = secrets.token_hex(32)
Db = psycopg.Connection[Any]


def web_settings(
    settings_factory: Callable[..., Settings],
    password: str = PASSWORD,
    token: str = TOKEN,
    **overrides: Any,
) -> Settings:
    settings = settings_factory(
        **{
            "web.session_secret": SECRET,
            "web.tokens": [{"name": "ci", "role": "operator", "token": token}],
            "web.users": [
                {"username": "alice", "password_hash": hash_password(password), "role": "admin"}
            ],
            **overrides,
        }
    )
    migrate(settings.database.url, settings.database.schema_name)
    return settings


@asynccontextmanager
async def serving(
    settings: Settings, *, base_url: str = "http://testserver", **app_options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A conveyor web app (one process, as it were) and a browser talking to it."""
    app = create_app(settings, **app_options)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as http,
    ):
        yield http


async def log_in(http: httpx.AsyncClient, **form: str) -> httpx.Response:
    page = await http.get("/login")
    return await http.post("/login", data={"csrf_token": csrf_of(page.text), **form})


@pytest.fixture
def db(settings_factory: Callable[..., Settings]) -> Any:
    settings = web_settings(settings_factory)
    with psycopg.connect(settings.database.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{settings.database.schema_name}"'.encode())
        yield conn


# -- finding 3: sessions can be revoked ------------------------------------------------------


async def test_finding_3_a_saved_cookie_stops_working_after_logout(
    settings_factory: Callable[..., Settings],
) -> None:
    async with serving(web_settings(settings_factory)) as http:
        assert (await log_in(http, token=TOKEN)).status_code == 303
        saved = dict(http.cookies)
        home = await http.get("/")
        assert home.status_code == 200
        out = await http.post("/logout", data={"csrf_token": csrf_of(home.text)})
        assert out.status_code == 303
        http.cookies.clear()
        http.cookies.update(saved)  # the stolen copy
        assert (await http.get("/api/stats")).status_code == 401


async def test_finding_3_a_password_change_or_token_rotation_ends_sessions(
    settings_factory: Callable[..., Settings],
) -> None:
    cookies = {}
    settings = web_settings(settings_factory)
    async with serving(settings) as http:
        for who, form in (("alice", {"username": "alice", "password": PASSWORD}), ("ci", {})):
            http.cookies.clear()
            assert (await log_in(http, **(form or {"token": TOKEN}))).status_code == 303
            cookies[who] = dict(http.cookies)
    # Another conveyor web process with the same configuration honours both sessions...
    async with serving(settings) as http:
        for saved in cookies.values():
            http.cookies.clear()
            http.cookies.update(saved)
            assert (await http.get("/api/stats")).status_code == 200
    # ...and one started after alice's password changed and the token was rotated, neither.
    changed = web_settings(settings_factory, password="a new password", token="rotated-0123456789")
    async with serving(changed) as http:
        for saved in cookies.values():
            http.cookies.clear()
            http.cookies.update(saved)
            assert (await http.get("/api/stats")).status_code == 401


async def test_finding_3_a_session_has_an_absolute_lifetime(
    settings_factory: Callable[..., Settings], db: Db
) -> None:
    async with serving(web_settings(settings_factory)) as http:
        assert (await log_in(http, token=TOKEN)).status_code == 303
        for _ in range(3):
            assert (await http.get("/api/stats")).status_code == 200
        rows = db.execute(b"SELECT expires_at - created FROM web_sessions").fetchall()
        assert rows == [(timedelta(hours=12),)], "activity never extends a session"
        stored = db.execute(b"SELECT id_hash FROM web_sessions").fetchone()
        assert stored is not None and bytes(stored[0]).hex() not in str(http.cookies)
        db.execute(b"UPDATE web_sessions SET expires_at = now() - interval '1 second'")

        async def refused() -> bool:
            return (await http.get("/api/stats")).status_code == 401

        await wait_until(refused, message="the expired session refused")
