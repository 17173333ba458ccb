-- name: migrate_lock
-- Held for the whole run, which is one transaction: a second `conveyor migrate` waits here,
-- then finds nothing to do. A transaction lock, unlike a session lock, also works through a
-- transaction-mode pooler, which may run each statement on another server connection.
SELECT pg_advisory_xact_lock(%(lock)s);

-- name: migrate_create_schema
CREATE SCHEMA IF NOT EXISTS {schema};

-- name: migrate_create_ledger
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied timestamptz NOT NULL DEFAULT now()
);

-- name: migrate_applied_versions
SELECT version FROM {schema}.schema_migrations;

-- name: migrate_record
-- In the run's transaction: a migration that fails leaves no row.
INSERT INTO {schema}.schema_migrations (version, name) VALUES (%(version)s, %(name)s);

-- name: migrate_ledger_exists
SELECT to_regclass(quote_ident(%(schema)s) || '.schema_migrations') IS NOT NULL AS present;

-- name: migrate_latest_version
SELECT max(version) AS version FROM {schema}.schema_migrations;
