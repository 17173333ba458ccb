"""Numbered migrations, applied in order under an advisory lock.

Two processes migrating at once serialise on the lock; the second finds every version
recorded and applies nothing. One run is one transaction, holding a transaction-level
lock (which, unlike a session lock, works through a transaction-mode pooler): the pending
migrations and the rows that record them commit together, so a failed migration leaves
no trace.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import cast

import psycopg
from psycopg.rows import DictRow, dict_row

from conveyor.config import Settings
from conveyor.store.base import database_errors
from conveyor.store.queries import check_schema_name, load_queries, render

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
    queries = load_queries(check_schema_name(schema))
    lock = {"lock": _lock_id(schema)}
    applied: list[Migration] = []
    with _connect(url, connect_timeout) as conn, conn.transaction():
        conn.execute(queries["migrate_lock"], lock)
        conn.execute(queries["migrate_create_schema"])
        conn.execute(queries["migrate_create_ledger"])
        rows = conn.execute(queries["migrate_applied_versions"]).fetchall()
        done = {row["version"] for row in rows}
        for migration in available_migrations():
            if migration.version in done:
                continue
            conn.execute(render(migration.sql, schema).encode())
            conn.execute(
                queries["migrate_record"],
                {"version": migration.version, "name": migration.name},
            )
            applied.append(migration)
    return applied


def current_version(url: str, schema: str, connect_timeout: float = 5.0) -> int | None:
    queries = load_queries(check_schema_name(schema))
    with _connect(url, connect_timeout) as conn:
        ledger = conn.execute(queries["migrate_ledger_exists"], {"schema": schema}).fetchone()
        if ledger is None or not ledger["present"]:
            return None
        row = conn.execute(queries["migrate_latest_version"]).fetchone()
        return None if row is None else cast(int | None, row["version"])


@contextmanager
def _connect(url: str, connect_timeout: float) -> Iterator[psycopg.Connection[DictRow]]:
    """One autocommit connection (each migration opens its own transaction); driver errors
    come out as Conveyor's own."""
    with (
        database_errors(),
        psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=int(connect_timeout),
            row_factory=dict_row,
            # A statement run more than five times would be prepared, which a
            # transaction-mode pooler breaks; a migration gains nothing from it.
            prepare_threshold=None,
        ) as conn,
    ):
        yield conn


def apply_migrations(settings: Settings) -> list[str]:
    """Apply pending migrations of the configured schema; return `NNN_name` of each."""
    db = settings.database
    # Behind a transaction-mode pooler, migrations go over the direct connection.
    applied = migrate(db.direct_url or db.url, db.schema_name, db.connect_timeout)
    return [f"{migration.version:03d}_{migration.name}" for migration in applied]
