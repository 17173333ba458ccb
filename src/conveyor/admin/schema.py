"""Schema upgrades as an admin operation, so the CLI needs no store module of its own."""

from __future__ import annotations

from conveyor.config import Settings
from conveyor.store.migrate import apply_migrations


def migrate_schema(settings: Settings) -> list[str]:
    """Apply pending migrations under the advisory lock; return `NNN_name` of each applied
    (none when the schema is up to date)."""
    return apply_migrations(settings)
