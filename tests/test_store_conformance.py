"""Every named statement and migration against the schema they are written for.

A typo in a `.sql` file (a column, a table, a token, a type) fails here, in a second, not
in a fault test minutes later. The statements are found by name, so a statement added
later is covered without touching this file.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import psycopg
import pytest
from psycopg import pq

from conveyor import vocabulary
from conveyor.config import Settings
from conveyor.store.listen import CHANNEL_SLOT
from conveyor.store.queries import load_queries, render
from tests.factories import add_job

# psycopg's placeholders (named, positional, and the escaped percent sign).
_PLACEHOLDER = re.compile(rb"%\((?P<name>[^)]+)\)[sbt]|%[sbt]|%%")
_INDETERMINATE = re.compile(r"could not determine data type of parameter \$(\d+)")
_TEXT_OID = 25
_SQL = resources.files("conveyor").joinpath("sql")


def server_side(sql: bytes) -> tuple[bytes, int]:
    """The statement as psycopg sends it: `$n` for each distinct parameter."""
    numbers: dict[bytes, int] = {}

    def number(match: re.Match[bytes]) -> bytes:
        if match.group(0) == b"%%":
            return b"%"
        key = match.group("name") or b"#%d" % len(numbers)
        numbers.setdefault(key, len(numbers) + 1)
        return b"$%d" % numbers[key]

    return _PLACEHOLDER.sub(number, sql), len(numbers)


def parse_and_describe(conn: psycopg.Connection[Any], name: str, sql: bytes) -> list[str]:
    """Have the server parse, analyse and describe `sql` (a prepared statement, dropped
    again); return its result columns. Raise AssertionError with the server's message.

    Parameters are left for the server to type, as psycopg leaves a str; one it cannot
    type from its context alone is declared text, as psycopg would send it."""
    # Identifiers the store fills in at run time (LISTEN takes no parameters).
    query, count = server_side(sql.replace(CHANNEL_SLOT, b'"conformance_channel"'))
    types = [0] * count
    handle = f"conformance_{name}".encode()
    pgconn = conn.pgconn
    for _ in range(count + 1):
        result = pgconn.prepare(handle, query, types)
        if result.status == pq.ExecStatus.COMMAND_OK:
            break
        message = (result.error_message or b"").decode(errors="replace").strip()
        untyped = _INDETERMINATE.search(message)
        if untyped is None or types[int(untyped.group(1)) - 1] != 0:
            raise AssertionError(f"statement {name!r} does not parse: {message}")
        types[int(untyped.group(1)) - 1] = _TEXT_OID
    else:
        raise AssertionError(f"statement {name!r}: parameters could not be typed")
    try:
        described = pgconn.describe_prepared(handle)
        assert described.status == pq.ExecStatus.COMMAND_OK, described.error_message
        return [(described.fname(i) or b"").decode() for i in range(described.nfields)]
    finally:
        pgconn.exec_(b"DEALLOCATE " + handle)


@pytest.fixture(scope="module")
def statement_names() -> list[str]:
    names = load_queries("conformance").names()
    assert names, "no named statements found in conveyor/sql/queries"
    return names


@pytest.fixture
def conn(settings: Settings) -> Any:
    with psycopg.connect(settings.database.url, autocommit=True) as connection:
        yield connection


def test_every_named_statement_parses_against_a_migrated_schema(
    settings: Settings, conn: psycopg.Connection[Any], statement_names: list[str]
) -> None:
    queries = load_queries(settings.database.schema_name)
    assert queries.names() == statement_names
    failures = []
    for name in statement_names:
        try:
            columns = parse_and_describe(conn, name, queries[name])
        except AssertionError as error:
            failures.append(str(error))
            continue
        # Rows are read by column name: a name given twice would silently lose a value.
        twice = sorted({column for column in columns if columns.count(column) > 1})
        if twice:
            failures.append(f"statement {name!r}: columns {twice} appear twice; name them")
    assert not failures, "\n".join(failures)


def test_a_typo_is_caught(conn: psycopg.Connection[Any], settings: Settings) -> None:
    """The check itself: a wrong column and a wrong table fail, a right statement passes."""
    schema = settings.database.schema_name
    good = render("SELECT id, status FROM {schema}.jobs WHERE id = %(id)s", schema).encode()
    assert parse_and_describe(conn, "good", good) == ["id", "status"]
    for bad in (
        "SELECT id, stauts FROM {schema}.jobs WHERE id = %(id)s",
        "SELECT id FROM {schema}.job WHERE id = %(id)s",
        "UPDATE {schema}.jobs SET attempt = attempt + 'x' WHERE id = %(id)s",
    ):
        with pytest.raises(AssertionError, match="does not parse"):
            parse_and_describe(conn, "bad", render(bad, schema).encode())


def test_placeholders_become_numbered_parameters() -> None:
    query, count = server_side(b"SELECT %(a)s, %(b)s, %(a)s, %s, 'x%%' LIKE 'x%%'")
    assert (query, count) == (b"SELECT $1, $2, $1, $3, 'x%' LIKE 'x%'", 3)


# -- tokens and literals -------------------------------------------------------------------


def sql_files() -> list[tuple[str, str]]:
    found = []
    for folder in ("queries", "migrations"):
        for entry in _SQL.joinpath(folder).iterdir():
            if entry.name.endswith(".sql"):
                found.append((f"{folder}/{entry.name}", entry.read_text(encoding="utf-8")))
    return sorted(found)


def test_every_token_in_every_sql_file_is_known() -> None:
    files = sql_files()
    assert any(name.startswith("queries/") for name, _ in files)
    assert any(name.startswith("migrations/") for name, _ in files)
    for name, text in files:
        rendered = render(text, "conformance")  # raises on an unknown {TOKEN}
        # A token the renderer does not recognise as one ({Queued}, {schema_name}) would
        # reach PostgreSQL verbatim.
        filled = rendered.replace(CHANNEL_SLOT.decode(), '"conformance_channel"')
        leftover = re.findall(r"\{[A-Za-z_][A-Za-z0-9_]*\}", _without_literals(filled))
        assert not leftover, f"{name}: unrendered {leftover}"


_STATUS_WORDS = {*vocabulary.STATUSES, *vocabulary.LOG_STATUSES, *vocabulary.LANES}


def test_named_statements_take_statuses_and_lanes_from_the_vocabulary() -> None:
    """`{QUEUED}`, never `'queued'`: a status is spelt in one place."""
    checked = 0
    for name, text in sql_files():
        if not name.startswith("queries/"):
            continue
        checked += 1
        literals = set(re.findall(r"'([a-z_]+)'", _without_comments(text)))
        assert not literals & _STATUS_WORDS, f"{name}: use tokens for {literals & _STATUS_WORDS}"
    assert checked


_STATUS_COMPARISON = re.compile(
    r"\b(?P<column>status|lane)\s*(?:=|<>|!=)\s*'(?P<one>[^']*)'"
    r"|\b(?P<listed>status|lane)\s+(?:NOT\s+)?IN\s*\((?P<many>[^)]*)\)",
    re.IGNORECASE,
)


def test_migration_literals_are_vocabulary_members() -> None:
    """Migrations are history and keep their literals; those must still be our words."""
    allowed = {
        "status": {*vocabulary.STATUSES, *vocabulary.LOG_STATUSES},
        "lane": set(vocabulary.LANES),
    }
    found = 0
    for name, text in sql_files():
        if not name.startswith("migrations/"):
            continue
        for match in _STATUS_COMPARISON.finditer(_without_comments(text)):
            column = (match.group("column") or match.group("listed")).lower()
            words = [match.group("one")] if match.group("one") is not None else []
            words += re.findall(r"'([^']*)'", match.group("many") or "")
            for word in words:
                found += 1
                assert word in allowed[column], f"{name}: {column} {word!r} is not in vocabulary"
    assert found, "no status literal found in the migrations: is the pattern still right?"


def test_migrated_constraints_and_predicates_match_the_vocabulary(
    conn: psycopg.Connection[Any], settings: Settings
) -> None:
    """After every migration: the status CHECK allows exactly the vocabulary's statuses, and
    every partial index predicate on jobs names only those."""
    schema = settings.database.schema_name
    checks = conn.execute(
        b"SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c"
        b" WHERE c.conrelid = %s::regclass AND c.contype = 'c'"
        b" AND pg_get_constraintdef(c.oid) LIKE '%%status%%'",
        (f'"{schema}".jobs',),
    ).fetchall()
    assert len(checks) == 1, checks
    assert set(re.findall(r"'([a-z_]+)'", checks[0][0])) == set(vocabulary.STATUSES)
    predicates = conn.execute(
        b"SELECT i.indexrelid::regclass::text, pg_get_expr(i.indpred, i.indrelid)"
        b" FROM pg_index i WHERE i.indrelid = %s::regclass AND i.indpred IS NOT NULL",
        (f'"{schema}".jobs',),
    ).fetchall()
    assert predicates, "jobs has no partial index"
    for index, predicate in predicates:
        words = set(re.findall(r"'([a-z_]+)'", predicate))
        assert words <= set(vocabulary.STATUSES), f"{index}: {predicate}"


def _without_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _without_literals(sql: str) -> str:
    return re.sub(r"'(?:[^']|'')*'", "''", _without_comments(sql))


def test_only_the_dispatch_commits_without_waiting_for_the_wal_flush(
    settings: Settings, db: psycopg.Connection[Any]
) -> None:
    """dispatch_ready turns synchronous_commit off for its own transaction (a lost
    dispatch is redone; docs/architecture.md, "Work per job"); the claim keeps it on."""
    queries = load_queries(settings.database.schema_name)
    add_job(db)
    dispatched = add_job(db, status=vocabulary.DISPATCHED)

    def setting_after(name: str, params: dict[str, Any]) -> tuple[int, str]:
        with db.transaction(force_rollback=True):
            rows = db.execute(queries[name], params).fetchall()
            shown = db.execute(b"SHOW synchronous_commit").fetchone()
        assert shown is not None
        return len(rows), shown[0]

    assert setting_after("dispatch_ready", {"buffer": 10, "batch": 10, "skip": []}) == (1, "off")
    claim = {"ids": [dispatched], "worker_id": "w", "lease": 30.0}
    assert setting_after("claim_jobs", claim) == (1, "on")
    assert db.execute(b"SHOW synchronous_commit").fetchone() == ("on",)
