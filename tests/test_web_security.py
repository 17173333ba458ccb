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
    settings: Settings,
    *,
    base_url: str = "http://testserver",
    client: tuple[str, int] = ("127.0.0.1", 123),
    **app_options: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """A conveyor web app (one process, as it were) and a browser talking to it."""
    app = create_app(settings, **app_options)
    transport = httpx.ASGITransport(app=app, client=client)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=base_url) as http,
    ):
        yield http


@asynccontextmanager
async def browsers(settings: Settings, *addresses: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Several browsers, from these client addresses, on one conveyor web process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=(address, 4000)),
                base_url="http://testserver",
            )
            for address in addresses
        ]
        try:
            yield clients
        finally:
            for client in clients:
                await client.aclose()


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


# -- finding 2: login brute force --------------------------------------------------------------


def attempts(outcome: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("login_attempts_total", {"outcome": outcome}) or 0.0


async def test_finding_2_wrong_passwords_are_throttled_per_user(
    settings_factory: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = web_settings(settings_factory)
    before = {outcome: attempts(outcome) for outcome in ("success", "failure", "throttled")}
    answers = []
    with caplog.at_level("INFO", logger="conveyor.web"):
        async with browsers(settings, "127.0.0.1", "192.0.2.7") as (http, elsewhere):
            for n in range(20):
                reply = await log_in(http, username="alice", password=f"guess-{n}")
                answers.append(reply.status_code)
            assert answers[:5] == [401] * 5, "a few typos are forgiven"
            assert answers[-1] == 429
            throttled = await log_in(http, username="alice", password=PASSWORD)
            assert throttled.status_code == 429, "no password is tried while throttled"
            assert int(throttled.headers["retry-after"]) > 0
            assert "Too many failed logins" in throttled.text
            # From another address, the user is still throttled (a botnet gains nothing).
            other = await log_in(elsewhere, username="alice", password=PASSWORD)
            assert other.status_code == 429
    failed = [r for r in caplog.records if "login failed" in r.getMessage()]
    assert len(failed) == 5 and "alice" in failed[0].getMessage()
    assert any("login throttled" in r.getMessage() for r in caplog.records)
    assert not any("guess-" in r.getMessage() or PASSWORD in r.getMessage() for r in caplog.records)
    assert attempts("failure") - before["failure"] == 5
    assert attempts("throttled") - before["throttled"] == 17


async def test_finding_2_throttled_per_client_address_and_success_is_logged(
    settings_factory: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = web_settings(settings_factory)
    before = attempts("success")
    with caplog.at_level("INFO", logger="conveyor.web"):
        async with browsers(settings, "198.51.100.9", "198.51.100.10") as (http, other):
            assert (await log_in(http, token=TOKEN)).status_code == 303
            http.cookies.clear()
            answers = [(await log_in(http, token=f"guess-{n:020}")).status_code for n in range(25)]
            assert answers[-1] == 429, "guessing tokens (no user name) is throttled by address"
            assert (await log_in(http, username="bob", password="x")).status_code == 429
            assert (await log_in(other, token=TOKEN)).status_code == 303, "others are not"
    assert attempts("success") - before == 2
    assert any(
        "login succeeded" in r.getMessage() and "token:ci" in r.getMessage() for r in caplog.records
    )


def test_finding_2_a_throttle_forgets_after_its_lockout() -> None:
    from conveyor.web.throttle import LoginThrottle

    now = [1000.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    keys = ("user:alice", "addr:203.0.113.1")
    for _ in range(5):
        assert throttle.wait(keys) == 0
        throttle.failed(keys)
    throttle.failed(keys)
    assert throttle.wait(keys) > 0
    now[0] += throttle.wait(keys) + 0.1
    assert throttle.wait(keys) == 0
    throttle.succeeded(keys[:1])
    assert throttle.wait(keys[:1]) == 0


# -- finding 6: /readyz and allowed hosts -----------------------------------------------------


async def test_finding_6_readyz_probes_at_most_once_a_second(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from conveyor import probes

    calls: list[str] = []
    for name in ("check_postgres", "survey_redis"):
        real = getattr(probes, name)

        async def counted(settings: Settings, real: Any = real, name: str = name) -> Any:
            calls.append(name)
            return await real(settings)

        monkeypatch.setattr(probes, name, counted)
    async with serving(web_settings(settings_factory)) as http:
        replies = await asyncio.gather(*(http.get("/readyz") for _ in range(20)))
    assert [reply.status_code for reply in replies] == [200] * 20
    assert sorted(calls) == ["check_postgres", "survey_redis"], "one probe served them all"


async def test_finding_6_readyz_says_what_failed_without_connection_details(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = web_settings(settings_factory)
    broken = settings_factory(
        **{
            "database.url": "postgresql://secret_role@127.0.0.1:9/conveyor_db",
            "web.session_secret": SECRET,
        }
    )
    async with serving(broken) as http:
        reply = await http.get("/readyz")
    assert reply.status_code == 503
    body = reply.json()
    assert (body["ready"], body["failing"]) == (False, ["PostgreSQL: unavailable"])
    assert "127.0.0.1" not in reply.text and "secret_role" not in reply.text
    assert settings.database.url  # the good settings are untouched


async def test_finding_6_unknown_host_names_are_refused(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = web_settings(settings_factory)
    for base_url in ("http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080"):
        async with serving(settings, base_url=base_url) as http:
            assert (await http.get("/healthz")).status_code == 200, base_url
    async with serving(settings, base_url="http://rebound.attacker.example") as http:
        for path in ("/readyz", "/login", "/api/openapi.json", "/metrics"):
            refused = await http.get(path)
            assert refused.status_code == 400, path
    named = web_settings(settings_factory, **{"web.allowed_hosts": "conveyor.internal"})
    async with serving(named, base_url="https://conveyor.internal") as http:
        assert (await http.get("/healthz")).status_code == 200


# -- finding 7: small ones ------------------------------------------------------------------------


async def test_finding_7_a_nul_byte_in_the_text_filter_is_not_a_500(
    settings_factory: Callable[..., Settings], db: Db
) -> None:
    from tests.factories import add_job

    add_job(db, "reports", error="boom")
    async with serving(web_settings(settings_factory)) as http:
        assert (await log_in(http, token=TOKEN)).status_code == 303
        for path in ("/queues/reports?text=a%00b", "/dead?text=%00", "/api/jobs?text=a%00b"):
            reply = await http.get(path)
            assert reply.status_code in (200, 400), (path, reply.status_code)


async def test_finding_7_a_csrf_token_sent_as_a_form_field_to_the_api_is_not_a_500(
    settings_factory: Callable[..., Settings], db: Db
) -> None:
    from tests.factories import add_job

    add_job(db, "reports")
    async with serving(web_settings(settings_factory)) as http:
        assert (await log_in(http, token=TOKEN)).status_code == 303
        csrf = csrf_of((await http.get("/")).text)
        for path in ("/api/queues/reports/pause", "/api/jobs/delete", "/api/dead/purge"):
            reply = await http.post(path, data={"csrf_token": csrf, "ids": "x"})
            assert reply.status_code < 500, (path, reply.text)
            assert reply.headers["content-type"].startswith("application/json")


async def test_finding_7_api_answers_are_never_cached_or_sniffed(
    settings_factory: Callable[..., Settings],
) -> None:
    async with serving(web_settings(settings_factory)) as http:
        for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}):
            reply = await http.get("/api/stats", headers=headers)
            assert reply.headers["content-type"].startswith("application/json")
            assert reply.headers["cache-control"] == "no-store", reply.status_code
            assert reply.headers["x-content-type-options"] == "nosniff"
        assert "strict-transport-security" not in reply.headers, "not over plain HTTP"


async def test_finding_7_under_tls_hsts_and_a_host_prefixed_cookie(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = web_settings(settings_factory)
    async with serving(settings, base_url="https://testserver", tls=True) as http:
        reply = await log_in(http, token=TOKEN)
        assert reply.status_code == 303
        assert reply.headers["strict-transport-security"].startswith("max-age=")
        cookie = reply.headers["set-cookie"]
        assert cookie.startswith("__Host-conveyor_session=") and "secure" in cookie.lower()
        assert "domain=" not in cookie.lower() and "path=/" in cookie.lower()
        assert (await http.get("/api/stats")).status_code == 200
    async with serving(settings) as http:
        reply = await log_in(http, token=TOKEN)
        assert reply.headers["set-cookie"].startswith("conveyor_session=")


# Versions that fix the advisories known when issue 11 was fixed: starlette 1.3.1 (form
# parser limits; 1.0.1 CVE-2026-48710), python-multipart 0.0.32 (querystring DoS,
# header and parameter smuggling, negative Content-Length), Jinja2 3.1.6 (sandbox
# escapes, CVE-2025-27516), cryptography 50.0 (PKCS#7 Bleichenbacher oracle,
# CVE-2026-69247; also CVE-2026-26007 and CVE-2026-39892).
ADVISORY_FLOORS = {
    "starlette": (1, 3, 1),
    "python-multipart": (0, 0, 32),
    "Jinja2": (3, 1, 6),
    "cryptography": (50, 0),
}


def test_finding_7_dependency_floors_are_past_known_advisories() -> None:
    import re
    import tomllib
    from importlib.metadata import version
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    floors = {}
    for requirement in project["project"]["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?>=([0-9.]+).*", requirement)
        if match:
            floors[match.group(1)] = tuple(int(part) for part in match.group(2).split("."))
    for name, fixed in ADVISORY_FLOORS.items():
        assert floors[name] >= fixed, f"{name}>={floors[name]} allows a vulnerable version"
        installed = tuple(int(p) for p in re.findall(r"\d+", version(name))[: len(fixed)])
        assert installed >= fixed, f"the installed {name} {version(name)} is vulnerable"
