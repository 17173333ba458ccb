"""What PostgreSQL and Conveyor's processes did in a window, for `benchmarks/cost.py`.

Counters come from a scratch database of their own on a shared server, so that
`pg_stat_database` and `pg_stat_user_tables` hold only the benchmark's work. WAL is
cluster-wide: when `pg_walinspect` is installable, the records of the window are read back
and only those of the scratch database's relations and transactions are counted (other
databases' writes, checkpoints and running-xacts records excluded); the same pass counts
the btree leaf insertions of each index, which `pg_stat_user_indexes` does not keep. CPU is
utime + stime from /proc/<pid>/stat (through psutil), before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

SCRATCH_MARK = "conveyor scratch: cost benchmark"
BACKGROUND = ("checkpointer", "background writer", "walwriter")
STATS_COLLECTOR_DELAY = 1.0
DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# One statement, so that one commit (the harness's own, counted by the caller) brackets it
# and the statistics it reads are one consistent snapshot.
SNAPSHOT = """
SELECT pg_current_wal_flush_lsn()::text AS lsn,
       (SELECT xact_commit FROM pg_stat_database
         WHERE datname = current_database()) AS commits,
       (SELECT coalesce(jsonb_object_agg(relname, jsonb_build_array(
                    n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del)), '{}')
          FROM pg_stat_user_tables WHERE schemaname = %(schema)s) AS tables
"""

BACKENDS = """
SELECT pid, coalesce(backend_type, '') AS kind,
       datname IS NOT DISTINCT FROM current_database() AS ours
FROM pg_stat_activity
WHERE pid <> pg_backend_pid()
  AND (datname = current_database() OR backend_type = ANY(%(background)s))
"""

# Records are attributed to the scratch database by the first block reference's
# database oid, or, for records without one (commits), by a transaction that touched it.
# end_lsn - start_lsn includes the record's alignment padding and any page header it
# crosses: the sum is the WAL the window consumed.
WAL_RECORDS = """
WITH records AS (
    SELECT xid::text::bigint AS xid, resource_manager, record_type, description,
           fpi_length, pg_wal_lsn_diff(end_lsn, start_lsn) AS bytes,
           relation[1]::oid AS database_oid, relation[2]::oid AS relfilenode
    FROM pg_get_wal_records_info(%(start)s::pg_lsn, %(end)s::pg_lsn),
         LATERAL regexp_match(block_ref, 'rel \\d+/(\\d+)/(\\d+)') AS relation
), transactions AS (
    SELECT DISTINCT xid FROM records WHERE database_oid = %(oid)s AND xid <> 0
), ours AS (
    SELECT * FROM records
    WHERE database_oid = %(oid)s OR xid IN (SELECT xid FROM transactions)
)
SELECT (SELECT coalesce(sum(bytes), 0) FROM records)::bigint AS cluster_bytes,
       (SELECT coalesce(sum(bytes), 0) FROM ours)::bigint AS bytes,
       (SELECT coalesce(sum(fpi_length), 0) FROM ours)::bigint AS fpi_bytes,
       (SELECT count(*) FROM ours) AS records,
       (SELECT coalesce(jsonb_object_agg(index_name, entries), '{}') FROM (
            SELECT c.relname AS index_name, count(*) AS entries
            FROM ours JOIN pg_class c ON c.relfilenode = ours.relfilenode
            WHERE ours.resource_manager = 'Btree'
              AND (ours.record_type IN ('INSERT_LEAF', 'INSERT_POST')
                   OR (ours.record_type IN ('SPLIT_L', 'SPLIT_R')
                       AND ours.description LIKE 'level 0,%%'))
            GROUP BY c.relname) AS per_index) AS index_entries,
       -- Where the bytes went: by relation and, for tables, by record type (UPDATE, LOCK,
       -- HOT_UPDATE...); every record of an index counts as its "index" part.
       (SELECT coalesce(jsonb_object_agg(part, bytes), '{}') FROM (
            SELECT coalesce(c.relname, '(no relation)') || ' '
                   || CASE WHEN c.relkind = 'i' THEN 'index' ELSE ours.record_type END AS part,
                   sum(ours.bytes)::bigint AS bytes
            FROM ours LEFT JOIN pg_class c ON c.relfilenode = ours.relfilenode
            GROUP BY 1) AS per_part) AS parts
"""

INDEXES_PER_TABLE = """
SELECT relname AS table_name, count(*) AS indexes
FROM pg_stat_user_indexes WHERE schemaname = %(schema)s GROUP BY relname
"""


def scratch_url(database_url: str, database: str) -> str:
    """`database_url` with its database replaced by `database`."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _database_of(database_url: str) -> str:
    return urlsplit(database_url).path.lstrip("/") or "postgres"


def reset_scratch_database(database_url: str, database: str) -> None:
    """Drop `database` if an earlier run marked it as scratch, then create it marked.
    Refuses (changing nothing) a database without the mark, or the one of the URL."""
    if not DATABASE_NAME.fullmatch(database):
        raise ValueError(
            f"--database-name must be lower-case letters, digits and _, not {database!r}"
        )
    if database == _database_of(database_url):
        raise ValueError(
            f"refusing to use {database!r}, the database of --database-url, as scratch"
        )
    drop_scratch_database(database_url, database)
    name = sql.Identifier(database)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(name, sql.Literal(SCRATCH_MARK))
        )


def drop_scratch_database(database_url: str, database: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') AS mark FROM pg_database"
            " WHERE datname = %s",
            (database,),
        ).fetchone()
        if row is None:
            return
        if row[0] != SCRATCH_MARK:
            raise ValueError(
                f"refusing to drop database {database!r}: it is not marked as this benchmark's "
                "scratch database. Nothing was changed; pass another --database-name."
            )
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))


@dataclass(frozen=True)
class TableWrites:
    inserts: int = 0
    updates: int = 0
    hot_updates: int = 0
    deletes: int = 0

    def minus(self, before: TableWrites) -> TableWrites:
        return TableWrites(
            self.inserts - before.inserts,
            self.updates - before.updates,
            self.hot_updates - before.hot_updates,
            self.deletes - before.deletes,
        )


@dataclass(frozen=True)
class Snapshot:
    lsn: str
    commits: int
    harness_commits: int  # the harness's own commits that this read sees
    tables: dict[str, TableWrites]


@dataclass(frozen=True)
class WalShare:
    bytes: int
    fpi_bytes: int
    cluster_bytes: int
    index_entries: dict[str, int] | None  # None: estimated instead (no pg_walinspect)
    method: str
    parts: dict[str, int] | None = None  # bytes by "relation record-type" (pg_walinspect)


@dataclass
class CpuReading:
    """CPU seconds by component, each a map of pid to utime + stime."""

    pids: dict[str, dict[int, float]] = field(default_factory=dict)

    def since(self, before: CpuReading) -> dict[str, float]:
        spent = {}
        for component, now in self.pids.items():
            earlier = before.pids.get(component, {})
            spent[component] = sum(max(0.0, s - earlier.get(pid, 0.0)) for pid, s in now.items())
        return spent


def cpu_seconds(pids: Iterable[int], with_children: bool = False) -> dict[int, float]:
    """utime + stime of each pid still alive (and, if asked, its descendants)."""
    seconds: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process = psutil.Process(pid)
            family = [process, *process.children(recursive=True)] if with_children else [process]
            for member in family:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    times = member.cpu_times()
                    seconds[member.pid] = times.user + times.system
    return seconds


class Harness:
    """The benchmark's own connection to the scratch database, autocommit: every statement
    it runs is one commit in pg_stat_database, counted here so the windows leave them out."""

    def __init__(self, conn: psycopg.AsyncConnection[dict[str, Any]], schema: str) -> None:
        self.conn = conn
        self.schema = schema
        self.commits = 0
        self.oid = 0
        self.walinspect = False

    @classmethod
    async def connect(cls, url: str, schema: str) -> Harness:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row)
        harness = cls(conn, schema)
        row = await harness.one(
            "SELECT oid::bigint AS oid FROM pg_database WHERE datname = current_database()"
        )
        harness.oid = int(row["oid"])
        available = await harness.one(
            "SELECT count(*) AS n FROM pg_available_extensions WHERE name = 'pg_walinspect'"
        )
        if available["n"]:
            await harness.run("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            # A checkpoint removes the WAL before its redo point, ours included, before
            # the window is read back; a temporary slot keeps it, and goes with this session.
            await harness.run(
                "SELECT pg_create_physical_replication_slot(%(slot)s, true, true)",
                {"slot": f"conveyor_cost_{os.getpid()}"},
            )
            harness.walinspect = True
        return harness

    async def close(self) -> None:
        await self.conn.close()

    async def run(
        self, query: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        self.commits += 1
        cursor = await self.conn.execute(query.encode(), params)
        return await cursor.fetchall() if cursor.description else []

    async def one(self, query: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        rows = await self.run(query, params)
        return rows[0]

    async def snapshot(self) -> Snapshot:
        """The counters, once no other session is left in the scratch database (a backend
        flushes its statistics when it exits) and this one has flushed its own."""
        await self.wait_alone()
        if self.conn.info.server_version >= 150000:
            # Statistics live in shared memory; ours are flushed when this statement ends.
            await self.run("SELECT pg_stat_force_next_flush()")
        else:
            # Before 15 a collector process receives them, every 500 ms at most.
            await asyncio.sleep(STATS_COLLECTOR_DELAY)
        row = await self.one(SNAPSHOT, {"schema": self.schema})
        tables = {name: TableWrites(*counts) for name, counts in row["tables"].items()}
        # This read's own commit comes after it.
        return Snapshot(row["lsn"], int(row["commits"]), self.commits - 1, tables)

    async def wait_alone(self, seconds: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            row = await self.one(
                "SELECT count(*) AS n FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if row["n"] == 0:
                return
            if loop.time() > deadline:
                raise RuntimeError("sessions of the scratch database did not end within 60 s")
            await asyncio.sleep(0.1)

    async def postgres_cpu(self) -> dict[str, dict[int, float]]:
        """CPU of the scratch database's backends and of the server's WAL/checkpoint
        processes (these serve every database of the server)."""
        rows = await self.run(BACKENDS, {"background": list(BACKGROUND)})
        backends = [row["pid"] for row in rows if row["ours"]]
        background = [row["pid"] for row in rows if not row["ours"]]
        return {
            "postgres backends": cpu_seconds(backends),
            "postgres background": cpu_seconds(background),
        }

    async def wal_share(self, before: Snapshot, after: Snapshot) -> WalShare:
        if not self.walinspect:
            row = await self.one(
                "SELECT pg_wal_lsn_diff(%(end)s::pg_lsn, %(start)s::pg_lsn)::bigint AS bytes",
                {"start": before.lsn, "end": after.lsn},
            )
            total = int(row["bytes"])
            return WalShare(total, 0, total, None, "cluster-wide LSN difference (no pg_walinspect)")
        row = await self.one(WAL_RECORDS, {"start": before.lsn, "end": after.lsn, "oid": self.oid})
        return WalShare(
            int(row["bytes"]),
            int(row["fpi_bytes"]),
            int(row["cluster_bytes"]),
            {name: int(n) for name, n in row["index_entries"].items()},
            "WAL records of the scratch database's relations and transactions (pg_walinspect)",
            {part: int(n) for part, n in row["parts"].items()},
        )

    async def indexes_per_table(self) -> dict[str, int]:
        rows = await self.run(INDEXES_PER_TABLE, {"schema": self.schema})
        return {row["table_name"]: int(row["indexes"]) for row in rows}
