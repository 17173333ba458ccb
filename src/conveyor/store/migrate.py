"""Numbered migrations, applied in order under an advisory lock.

Two processes migrating at once serialise on the lock; the second finds every version
recorded and applies nothing. Each migration runs in its own transaction together with
the row that records it, so a failed migration leaves no trace.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from importlib import resources

import psycopg

from conveyor.store.queries import check_schema_name, render

_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    folder = resources.files("conveyor").joinpath("sql").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(
                Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version number: {versions}")
    return found


def _lock_id(schema: str) -> int:
    # Stable across processes and Python versions, unlike hash().
    return zlib.crc32(f"conveyor-migrate:{schema}".encode())


def migrate(url: str, schema: str, connect_timeout: float = 5.0) -> list[Migration]:
    """Apply pending migrations; return the ones this call applied."""
    check_schema_name(schema)
    applied: list[Migration] = []
    with psycopg.connect(url, autocommit=True, connect_timeout=int(connect_timeout)) as conn:
        conn.execute(b"SELECT pg_advisory_lock(%s)", (_lock_id(schema),))
        try:
            conn.execute(render("CREATE SCHEMA IF NOT EXISTS {schema}", schema).encode())
            conn.execute(
                render(
                    "CREATE TABLE IF NOT EXISTS {schema}.schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied timestamptz NOT NULL DEFAULT now())",
                    schema,
                ).encode()
            )
            done = {
                row[0]
                for row in conn.execute(
                    render("SELECT version FROM {schema}.schema_migrations", schema).encode()
                )
            }
            for migration in available_migrations():
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(render(migration.sql, schema).encode())
                    conn.execute(
                        render(
                            "INSERT INTO {schema}.schema_migrations (version, name) "
                            "VALUES (%s, %s)",
                            schema,
                        ).encode(),
                        (migration.version, migration.name),
                    )
                applied.append(migration)
        finally:
            conn.execute(b"SELECT pg_advisory_unlock(%s)", (_lock_id(schema),))
    return applied


def current_version(url: str, schema: str) -> int | None:
    check_schema_name(schema)
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute(
            b"SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".schema_migrations',)
        ).fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute(
            render("SELECT max(version) FROM {schema}.schema_migrations", schema).encode()
        ).fetchone()
        return None if row is None else row[0]
