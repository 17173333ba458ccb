-- Dashboard login sessions (migration 007). Time is PostgreSQL's: a session's lifetime
-- is fixed by the statement that opens it.

-- name: open_web_session
INSERT INTO {schema}.web_sessions (id_hash, subject, role, credential, expires_at)
VALUES (%(id_hash)s, %(subject)s, %(role)s, %(credential)s,
        now() + %(lifetime)s * interval '1 second');

-- name: find_web_session
-- A live session only: not revoked, not expired.
SELECT subject AS subject, role AS role, credential AS credential,
       extract(epoch FROM expires_at - now())::float8 AS expires_in
FROM {schema}.web_sessions
WHERE id_hash = %(id_hash)s AND revoked_at IS NULL AND expires_at > now();

-- name: revoke_web_session
UPDATE {schema}.web_sessions SET revoked_at = now()
WHERE id_hash = %(id_hash)s AND revoked_at IS NULL;

-- name: prune_web_sessions
DELETE FROM {schema}.web_sessions WHERE expires_at < now();
