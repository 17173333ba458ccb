-- Every queue name that has jobs at rest, found with a skip scan of jobs_admin_list_idx
-- (one index probe per queue, not a scan of a million rows). The admin listing and the
-- stats both need it; one definition keeps them in step.
CREATE OR REPLACE FUNCTION {schema}.queue_names_with_jobs() RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE seen(name) AS (
        (SELECT j.queue_name FROM {schema}.jobs j
         WHERE j.status IN ('queued', 'completed', 'dead', 'cancelled')
         ORDER BY j.queue_name LIMIT 1)
        UNION ALL
        SELECT (SELECT j.queue_name FROM {schema}.jobs j
                WHERE j.status IN ('queued', 'completed', 'dead', 'cancelled')
                  AND j.queue_name > seen.name
                ORDER BY j.queue_name LIMIT 1)
        FROM seen WHERE seen.name IS NOT NULL
    )
    SELECT name FROM seen WHERE name IS NOT NULL
$$;
