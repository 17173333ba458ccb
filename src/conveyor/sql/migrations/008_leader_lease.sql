-- The maintenance leader's lease, for queuers that have no PostgreSQL session of their own
-- (behind a transaction-mode pooler without database.direct_url): a session advisory lock
-- would be taken on whichever server connection the pooler picked and never released.
-- One row per election; the holder renews it well before expires_at.
CREATE TABLE {schema}.leader (
    name text PRIMARY KEY,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
);
