-- name: session_alive
-- A round trip that proves a long-lived session (LISTEN) still answers: waiting for
-- notifications alone cannot tell a silent socket from a calm queue.
SELECT true AS alive;

-- name: end_silent_session
-- If this session goes idle for longer than `ms` (its client stopped talking, or can no
-- longer reach us), PostgreSQL ends it, and with it the session's leader lock. Otherwise a
-- backend whose client went silent could hold maintenance hostage until TCP gives up.
SELECT set_config('idle_session_timeout', %(ms)s, false) AS idle_session_timeout;
