"""Everything that talks SQL: the schema, its migrations and the named queries."""

from conveyor.store.queries import Queries, load_queries

__all__ = ["Queries", "load_queries"]
