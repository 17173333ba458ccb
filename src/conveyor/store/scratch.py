"""Scratch schemas: the only schemas `conveyor bench` and `conveyor demo` may drop.

Both commands start from an empty schema, and DATABASE_URL may well point at the
production database. So a schema is dropped only if it carries the scratch mark (a
comment set in the very transaction that created it) and is not the schema the
operator's configuration names. Anything else may hold real jobs: the command is refused
and nothing changes.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from conveyor.errors import ScratchRefused
from conveyor.store.base import database_errors
from conveyor.store.queries import load_queries


def reset_scratch_schema(
    url: str, schema: str, configured_schema: str, connect_timeout: float = 5.0
) -> None:
    """Drop `schema` if it is a scratch schema, then create it afresh, marked as one."""
    _replace(url, schema, configured_schema, connect_timeout, recreate=True)


def drop_scratch_schema(
    url: str, schema: str, configured_schema: str, connect_timeout: float = 5.0
) -> None:
    """Drop `schema` if it is a scratch schema (no-op if it is gone already)."""
    _replace(url, schema, configured_schema, connect_timeout, recreate=False)


def _refuse_configured(schema: str, configured_schema: str) -> None:
    # By name, mark or no mark: a scratch schema named in the configuration has become
    # the live one.
    if schema == configured_schema:
        raise ScratchRefused(
            f"refusing to use schema {schema!r} as a scratch schema: it is the configured "
            "database.schema, where the queue's own jobs live. Nothing was changed; "
            "pass another --schema."
        )


def _replace(
    url: str, schema: str, configured_schema: str, connect_timeout: float, *, recreate: bool
) -> None:
    queries = load_queries(schema)  # validates the name before it reaches any SQL
    _refuse_configured(schema, configured_schema)
    with (
        database_errors(),
        psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(connect_timeout))) as conn,
        # One transaction: a refusal rolls back to exactly what was there, and a schema
        # this creates is never visible without its mark.
        conn.transaction(),
    ):
        conn.execute(queries["scratch_lock_timeout"])
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(queries["scratch_schema_state"], {"schema": schema}).fetchone()
        if row is not None:
            if not row["marked"]:
                raise ScratchRefused(
                    f"refusing to drop schema {schema!r}: it exists but was not created by "
                    "conveyor bench or demo (it lacks their scratch mark), so it may hold "
                    "real jobs. Nothing was changed. Pass another --schema, or, if its data "
                    f'is disposable, drop it yourself: DROP SCHEMA "{schema}" CASCADE'
                )
            conn.execute(queries["scratch_drop_schema"])
        if recreate:
            conn.execute(queries["scratch_create_schema"])
            conn.execute(queries["scratch_mark_schema"])
