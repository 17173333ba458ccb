"""Named queries, loaded once from the `.sql` files shipped in the package.

A file holds several queries, each introduced by a `-- name: <name>` line. `{schema}` is
replaced by the (validated) schema name, and `{QUEUED}`-style tokens by the literals of
`conveyor.vocabulary`; queries are kept as bytes so psycopg can prepare
them, and because a query read from a file is not a literal string.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from conveyor.vocabulary import sql_tokens

SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_HEADER = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def check_schema_name(schema: str) -> str:
    if not SCHEMA_NAME.match(schema):
        raise ValueError(
            f"schema name {schema!r} must be lower-case letters, digits and underscores, "
            "starting with a letter or underscore, at most 63 characters"
        )
    return schema


_TOKEN = re.compile(r"\{([A-Z][A-Z_]*)\}")


def render(text: str, schema: str) -> str:
    """Put the quoted schema and the vocabulary's literals in place of their tokens."""
    tokens = sql_tokens()

    def literal(match: re.Match[str]) -> str:
        try:
            return tokens[match.group(1)]
        except KeyError:
            raise RuntimeError(f"unknown SQL token {match.group(0)}") from None

    quoted = text.replace("{schema}", '"' + check_schema_name(schema) + '"')
    return _TOKEN.sub(literal, quoted)


@cache
def _raw_queries() -> dict[str, str]:
    found: dict[str, str] = {}
    folder = resources.files("conveyor").joinpath("sql").joinpath("queries")
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text(encoding="utf-8")
        parts = _HEADER.split(text)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in found:
                raise RuntimeError(f"query {name!r} is defined twice (second in {entry.name})")
            found[name] = body.strip().rstrip(";")
    return found


class Queries:
    """The named queries of one schema."""

    def __init__(self, schema: str) -> None:
        self.schema = check_schema_name(schema)
        self._sql = {name: render(body, schema).encode() for name, body in _raw_queries().items()}

    def __getitem__(self, name: str) -> bytes:
        try:
            return self._sql[name]
        except KeyError:
            raise KeyError(f"no SQL query named {name!r} in conveyor/sql/queries") from None

    def names(self) -> list[str]:
        return sorted(self._sql)


@cache
def load_queries(schema: str) -> Queries:
    return Queries(schema)
