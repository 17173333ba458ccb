-- Dashboard login sessions, kept here so that a logout ends a session in every conveyor
-- web process and for every copy of its cookie (a signed cookie alone cannot be taken
-- back). The cookie carries a random id; only its SHA-256 is stored, so reading this
-- table does not give anyone a session. `credential` is a fingerprint of the password
-- hash or API token the session was opened with: once configuration changes it (a
-- password change, a token rotation), the session no longer matches and is refused.
-- expires_at is fixed when the session opens; activity never extends it.
CREATE TABLE IF NOT EXISTS {schema}.web_sessions (
    id_hash bytea PRIMARY KEY,
    subject text NOT NULL,
    role text NOT NULL,
    credential text NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);

-- The pruning at each login deletes expired sessions by this.
CREATE INDEX IF NOT EXISTS web_sessions_expires_idx ON {schema}.web_sessions (expires_at);
