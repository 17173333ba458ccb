-- name: scratch_lock_timeout
-- A leftover process of an earlier run holding a lock must make the drop fail, not hang.
SET LOCAL lock_timeout = '10s';

-- name: scratch_schema_state
-- No row: the schema does not exist. `marked` is true only for a schema that
-- scratch_mark_schema labelled when `conveyor bench` or `conveyor demo` created it.
SELECT coalesce(starts_with(obj_description(n.oid, 'pg_namespace'), 'conveyor scratch:'), false)
       AS marked
FROM pg_namespace n
WHERE n.nspname = %(schema)s;

-- name: scratch_drop_schema
DROP SCHEMA {schema} CASCADE;

-- name: scratch_create_schema
CREATE SCHEMA {schema};

-- name: scratch_mark_schema
-- Run in the transaction that creates the schema, so it never exists unmarked. Only a
-- schema carrying this comment may be dropped by the next bench or demo run.
COMMENT ON SCHEMA {schema} IS 'conveyor scratch: made by conveyor bench or demo; their next run drops it';
