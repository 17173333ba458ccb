"""The SIGABRT of issue 10 (item 6), pinned down: under uvloop, a socket closed after a task
registered it with the loop but before the loop polled it makes libuv call abort() (its
epoll_ctl(ADD) fails with EBADF). psycopg registers the socket anew at every wait, so the
queuer hit this when it closed its LISTEN connection (after 'PostgreSQL unreachable ...')
in the very loop turn in which the listening task went back to waiting. The Listener now
cancels and awaits that task, which unregisters the socket, before closing the connection.

The child process below opens the session, lets the task register its socket (one turn),
and closes, fifty times: with the close first, it dies of SIGABRT at once."""

from __future__ import annotations

import subprocess
import sys

from conveyor.config import Settings

CHILD = """
import asyncio, sys
import uvloop
from conveyor.config import load_settings
from conveyor.store.listen import Listener

settings = load_settings(
    None, env={}, overrides={"database.url": sys.argv[1], "database.schema": sys.argv[2]}
)

async def main() -> None:
    listener = Listener(settings, lambda: None, lead=True)
    for _ in range(50):
        await listener.ensure_open()
        await asyncio.sleep(0)  # the serving task registers its socket; not polled yet
        await listener.close()
    print("closed 50 times")

uvloop.run(main())
"""


def test_closing_the_listen_session_mid_registration_does_not_abort(settings: Settings) -> None:
    db = settings.database
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", CHILD, db.url, db.schema_name],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "closed 50 times" in done.stdout
