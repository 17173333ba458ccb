"""Bulk fills for the benchmarks that need a big table: a million jobs in realistic
states in a few seconds (generate_series in PostgreSQL, not row by row). Like
`tests/factories.py`, this SQL fabricates state for measuring and skips the store; a
migration that renames a column is fixed here and there only."""

from __future__ import annotations

import time
from collections.abc import Callable

from conveyor.vocabulary import (
    CANCELLED,
    COMPLETED,
    DEAD,
    LOG_COMPLETED,
    LOG_DEAD,
    LOG_FAILED,
    QUEUED,
    RUNNING,
)
from tests.factories import Db


def fill_at_scale(
    db: Db,
    jobs: int,
    queues: list[str],
    running_queue: str,
    progress: Callable[[str], None] = print,
) -> None:
    """`jobs` rows spread over `queues` for measuring at scale: 85 % completed, 10 %
    waiting, 3 % dead, 1 % cancelled, 1 % scheduled two hours ahead, plus 300 running in
    `running_queue` and 100,000 finished attempts over the last hour (one in fifty
    failed). Then ANALYZE."""
    db.execute(b"SET synchronous_commit = off")
    db.execute(
        b"INSERT INTO job_queues (name) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
        (queues,),
    )
    statuses = {
        "queued": QUEUED,
        "completed": COMPLETED,
        "dead": DEAD,
        "cancelled": CANCELLED,
        "running": RUNNING,
        "log_completed": LOG_COMPLETED,
        "log_failed": LOG_FAILED,
    }
    started = time.perf_counter()
    chunk = 200_000
    for low in range(1, jobs + 1, chunk):
        high = min(jobs, low + chunk - 1)
        db.execute(
            b"""
            INSERT INTO jobs (id, queue_name, task, status, priority, payload, attempt,
                              max_attempts, run_at, created, updated, completed, failed,
                              last_error)
            SELECT gen_random_uuid(),
                   (%(queues)s::text[])[1 + n %% cardinality(%(queues)s::text[])],
                   'task_' || (n %% 7),
                   CASE WHEN n %% 100 < 85 THEN %(completed)s
                        WHEN n %% 100 < 95 THEN %(queued)s
                        WHEN n %% 100 < 98 THEN %(dead)s
                        WHEN n %% 100 < 99 THEN %(cancelled)s
                        ELSE %(queued)s END,
                   CASE WHEN n %% 10 = 0 THEN 10 WHEN n %% 10 = 9 THEN 500 ELSE 100 END,
                   jsonb_build_object('campaign', 'c' || (n %% 1000), 'recipient',
                                      'user' || n || '@example.com'),
                   CASE WHEN n %% 100 BETWEEN 95 AND 97 THEN 3 ELSE 1 END,
                   3,
                   now() - (n %% 86400) * interval '1 second'
                         + CASE WHEN n %% 100 = 99 THEN interval '2 hours'
                                ELSE interval '0' END,
                   now() - (n %% 86400) * interval '1 second',
                   now(),
                   CASE WHEN n %% 100 < 85 THEN now() - (n %% 86400) * interval '1 second' END,
                   CASE WHEN n %% 100 BETWEEN 95 AND 97 THEN now() END,
                   CASE WHEN n %% 100 BETWEEN 95 AND 97
                        THEN 'RuntimeError: upstream said 503' END
            FROM generate_series(%(low)s::int, %(high)s::int) AS n
            """,
            {"queues": queues, "low": low, "high": high, **statuses},
        )
        progress(f"  {high:,} jobs ({time.perf_counter() - started:.0f} s)")
    db.execute(
        b"INSERT INTO jobs (id, queue_name, task, status, payload, attempt, started,"
        b" lease_expires_at, worker_id) SELECT gen_random_uuid(), %(queue)s, 'task_1',"
        b" %(running)s, '{}', 1, now(), now() + interval '30 seconds', 'bench-worker'"
        b" FROM generate_series(1, 300)",
        {"queue": running_queue, **statuses},
    )
    db.execute(
        b"""
        INSERT INTO job_logs (job_id, queue_name, task, status, attempt_number, worker_id,
                              started, finished, duration)
        SELECT gen_random_uuid(), (%(queues)s::text[])[1 + n %% cardinality(%(queues)s::text[])],
               'task_1',
               CASE WHEN n %% 50 = 0 THEN %(log_failed)s ELSE %(log_completed)s END, 1,
               'bench-worker',
               now() - (n %% 3600) * interval '1 second' - interval '40 ms',
               now() - (n %% 3600) * interval '1 second', interval '40 ms'
        FROM generate_series(1, 100000) AS n
        """,
        {"queues": queues, **statuses},
    )
    db.execute(b"ANALYZE")


def fill_recent_minutes(
    db: Db,
    jobs: int,
    minutes: int,
    queues: list[str],
    ahead: int = 0,
    progress: Callable[[str], None] = print,
) -> None:
    """`jobs` jobs created evenly over the last `minutes` minutes, in creation order (as
    real enqueues arrive), each with the job_logs row of its attempt: 97 % completed,
    2 % failed once and queued again, 1 % dead; a quarter high priority, a quarter low;
    the last 1 % still queued, plus 300 running. For measuring the metrics rollup at the
    rate the issue names (12 M a day is 8,333 a minute). The newest `ahead` of those
    minutes lie in the future, so a benchmark started after the fill still finds a full
    minute to roll up. Then VACUUM ANALYZE and summarise the BRIN index, as autovacuum
    would have by then."""
    db.execute(b"SET synchronous_commit = off")
    db.execute(
        b"INSERT INTO job_queues (name) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
        (queues,),
    )
    words = {
        "queued": QUEUED,
        "completed": COMPLETED,
        "dead": DEAD,
        "running": RUNNING,
        "log_completed": LOG_COMPLETED,
        "log_failed": LOG_FAILED,
        "log_dead": LOG_DEAD,
    }
    started = time.perf_counter()
    chunk = 200_000
    for high in range(jobs, 0, -chunk):
        low = max(1, high - chunk + 1)
        # n counts down, so created (n minutes-fractions ago) counts up, as in real life.
        db.execute(
            b"""
            WITH made AS (
                INSERT INTO jobs (id, queue_name, task, status, priority, payload, attempt,
                                  run_at, started, completed, created, updated)
                SELECT gen_random_uuid(),
                       (%(queues)s::text[])[1 + n %% cardinality(%(queues)s::text[])],
                       'task_' || (n %% 7),
                       CASE WHEN n <= %(jobs)s / 100 THEN %(queued)s
                            WHEN n %% 100 < 2 THEN %(queued)s
                            WHEN n %% 100 = 2 THEN %(dead)s
                            ELSE %(completed)s END,
                       CASE n %% 4 WHEN 0 THEN 10 WHEN 1 THEN 500 ELSE 100 END,
                       '{}'::jsonb,
                       CASE WHEN n <= %(jobs)s / 100 THEN 0 ELSE 1 END,
                       c.at, c.at + interval '150 ms', c.at + interval '190 ms', c.at, c.at
                FROM generate_series(%(high)s::int, %(low)s::int, -1) AS n
                CROSS JOIN LATERAL (
                    SELECT now() + %(ahead)s * interval '1 minute'
                           - n::float8 / %(jobs)s * %(minutes)s * interval '1 minute' AS at
                ) c
                RETURNING id, queue_name, task, status, attempt, started
            )
            INSERT INTO job_logs (job_id, queue_name, task, status, attempt_number,
                                  worker_id, started, finished, duration)
            SELECT id, queue_name, task,
                   CASE status WHEN %(completed)s THEN %(log_completed)s
                               WHEN %(dead)s THEN %(log_dead)s ELSE %(log_failed)s END,
                   1, 'bench-worker', started, started + interval '40 ms', interval '40 ms'
            FROM made WHERE attempt = 1
            """,
            {"queues": queues, "jobs": jobs, "minutes": minutes, "low": low, "high": high,
             "ahead": ahead, **words},
        )  # fmt: skip
        progress(f"  {jobs - low + 1:,} jobs ({time.perf_counter() - started:.0f} s)")
    db.execute(
        b"INSERT INTO jobs (id, queue_name, task, status, payload, attempt, started,"
        b" lease_expires_at, worker_id, created) SELECT gen_random_uuid(), %(queue)s,"
        b" 'task_1', %(running)s, '{}', 1, now(), now() + interval '30 seconds',"
        b" 'bench-worker', now() - interval '1 day' FROM generate_series(1, 300)",
        {"queue": queues[0], **words},
    )
    db.execute(b"VACUUM ANALYZE jobs")
    db.execute(b"VACUUM ANALYZE job_logs")
    db.execute(b"SELECT brin_summarize_new_values('jobs_created_brin')")
