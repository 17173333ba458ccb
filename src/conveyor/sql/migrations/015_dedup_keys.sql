-- Deduplication modes (unique for a period, unique while in given states, debounce,
-- throttle): the key a job was enqueued with. NULL for every job enqueued without one: a
-- nullable column without a default is added without rewriting the table.
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS unique_key text;

-- decide_unique_keys and debounce_targets read the newest job holding a key (ORDER BY
-- created DESC, id DESC LIMIT 1). Partial: a job enqueued without a key adds no entry, so
-- the hot path (plain enqueue, every transition) pays only the predicate. Not UNIQUE on
-- purpose: older jobs keep their key after they leave the states that block duplicates,
-- and a transition back into such a state (undispatch, retry, an operator's retry) must
-- never fail on an index.
CREATE INDEX IF NOT EXISTS jobs_unique_key_idx
    ON {schema}.jobs (unique_key, created, id) WHERE unique_key IS NOT NULL;
