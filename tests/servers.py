"""Real servers for high-availability and liveness tests: PgBouncer, a Redis Sentinel set and
a TCP proxy that can go silent. Each runs on free loopback ports, is stopped by pid (or, for
the proxy, by closing its own sockets and joining its thread) and bounds every wait in time.
Every class is a context manager: `with SentinelSet(tmp_path) as redis_ha: ...`."""

from __future__ import annotations

import contextlib
import os
import queue
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

import psycopg
import redis
import redis.sentinel

from tests.processes import RedisServer, free_port

LOOPBACK = "127.0.0.1"


def find_command(name: str) -> str | None:
    """The command's path, also in /usr/sbin (Debian's pgbouncer), which a user's PATH lacks."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin")


def _deadline_loop(timeout: float, what: str, interval: float = 0.05) -> Iterator[None]:
    """Yields until `timeout` seconds have passed, then raises TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        yield
        time.sleep(interval)
    raise TimeoutError(f"{what} within {timeout} s")


def _stop_process(process: subprocess.Popen[bytes] | None, sig: int) -> None:
    """Sends `sig` to exactly this pid and reaps it (SIGKILL if it ignores `sig` for 10 s)."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, sig)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


class _Managed:
    """start() on enter, stop() on exit; a start() that fails stops what it started."""

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class PgBouncer(_Managed):
    """A private `pgbouncer` on a free loopback port in front of one PostgreSQL server.

    PgBouncer refuses to run as root, so as root it is started with `-u postgres`: it reads
    its root-owned files first, then drops to that user. Unlike `runuser`, which forks and
    stays in between, this keeps the Popen pid the pgbouncer pid, so stop() signals and reaps
    exactly that process, and its files can stay in pytest's root-only tmp_path (a RELOAD,
    which rereads them as that user, would then fail)."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        tmp_dir: Path,
        pool_mode: str = "transaction",
        *,
        default_pool_size: int = 4,
        max_client_conn: int = 50,
        run_as: str = "postgres",
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.dir = tmp_dir / f"pgbouncer-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ini = self.dir / "pgbouncer.ini"
        self.log = self.dir / "pgbouncer.log"
        self.user = run_as if os.geteuid() == 0 else None
        (self.dir / "userlist.txt").write_text('"postgres" ""\n')
        self.ini.write_text(
            "[databases]\n"
            f"* = host={upstream_host} port={upstream_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = {LOOPBACK}\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            # With trust the user must still be listed in the auth file.
            f"auth_file = {self.dir / 'userlist.txt'}\n"
            f"pool_mode = {pool_mode}\n"
            # PgBouncer 1.18 rejects a client whose startup packet carries a parameter it does
            # not track ("unsupported startup parameter"). Drivers send some: JDBC sends
            # extra_float_digits, libpq and psycopg send options whenever one is set, and
            # Conveyor sets options=-c jit=off today (store/connect.py). Ignored means dropped:
            # the server never sees them, so jit=off has no effect behind PgBouncer 1.18.
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"max_client_conn = {max_client_conn}\n"
            f"default_pool_size = {default_pool_size}\n"
            "server_connect_timeout = 5\n"
            "server_login_retry = 1\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{dbname}"

    def _start(self) -> None:
        as_user = ["-u", self.user] if self.user else []
        command = find_command("pgbouncer") or "pgbouncer"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [command, *as_user, str(self.ini)], stdout=log, stderr=subprocess.STDOUT
            )
        for _ in _deadline_loop(15, "pgbouncer accepting connections"):
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log.read_text(errors='replace')}")
            with contextlib.suppress(psycopg.OperationalError):
                with psycopg.connect(self.url(), connect_timeout=2, autocommit=True) as conn:
                    conn.execute(b"SELECT 1")
                return

    def stop(self) -> None:
        """SIGTERM (PgBouncer's immediate shutdown) to its pid, then reap it."""
        _stop_process(self.process, signal.SIGTERM)
        self.process = None


class SentinelSet(_Managed):
    """A primary redis-server, one replica and three redis-sentinels (quorum 2) watching
    service `mymaster`, all on free loopback ports under `tmp_dir`, all stopped by pid."""

    service = "mymaster"

    def __init__(
        self,
        tmp_dir: Path,
        *,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        sentinels: int = 3,
        quorum: int = 2,
    ) -> None:
        self.dir = tmp_dir
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.quorum = quorum
        for name in ("primary", "replica"):
            (tmp_dir / name).mkdir(parents=True, exist_ok=True)
        self.primary = RedisServer(tmp_dir / "primary")
        self.replica = RedisServer(
            tmp_dir / "replica", "--replicaof", LOOPBACK, str(self.primary.port)
        )
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinel_processes: list[subprocess.Popen[bytes]] = []
        self.killed_port: int | None = None

    @property
    def nodes(self) -> list[str]:
        """The sentinels, as "127.0.0.1:port"."""
        return [f"{LOOPBACK}:{port}" for port in self.sentinel_ports]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The sentinels, as redis-py's `Sentinel` takes them."""
        return [(LOOPBACK, port) for port in self.sentinel_ports]

    def sentinel(self, **kwargs: Any) -> redis.sentinel.Sentinel:
        """A redis-py Sentinel client on these sentinels (1 s socket timeouts by default)."""
        kwargs.setdefault("socket_timeout", 1)
        kwargs.setdefault("socket_connect_timeout", 1)
        return redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            self.addresses, sentinel_kwargs=dict(kwargs), **kwargs
        )

    def master(self, **kwargs: Any) -> redis.Redis:
        """A client on the current primary, found through the sentinels by redis-py."""
        client: redis.Redis = self.sentinel(**kwargs).master_for(  # type: ignore[no-untyped-call]
            self.service, redis_class=redis.Redis
        )
        return client

    def _start(self) -> None:
        self.primary.start()
        self.replica.start()
        self._wait_replica_linked(self.replica.port)
        for index, port in enumerate(self.sentinel_ports):
            folder = self.dir / f"sentinel-{index}"
            folder.mkdir(exist_ok=True)
            conf = folder / "sentinel.conf"  # sentinel rewrites its own config: keep it writable
            conf.write_text(
                f"port {port}\nbind {LOOPBACK}\ndaemonize no\ndir {folder}\n"
                f"logfile {folder / 'sentinel.log'}\n"
                f"sentinel monitor {self.service} {LOOPBACK} {self.primary.port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
            self.sentinel_processes.append(
                subprocess.Popen(
                    ["redis-sentinel", str(conf)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        # Ready when every sentinel knows the replica and the other sentinels (hello messages
        # every 2 s): before that a failover cannot reach a majority or finds no replica.
        others = str(len(self.sentinel_ports) - 1)
        for _ in _deadline_loop(20, "sentinels discovering each other and the replica", 0.2):
            states = [self._sentinel_state(port) for port in self.sentinel_ports]
            if all(
                s.get("num-other-sentinels") == others and s.get("num-slaves") == "1"
                for s in states
            ):
                return

    def _wait_replica_linked(self, port: int) -> None:
        with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as client:
            for _ in _deadline_loop(15, f"replica {port} in sync with its primary"):
                with contextlib.suppress(redis.exceptions.RedisError):
                    if client.info("replication").get("master_link_status") == "up":
                        return

    def _ask(self, port: int, *args: str) -> Any:
        with redis.Redis(
            port=port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True
        ) as client:
            return client.execute_command("SENTINEL", *args)

    def _sentinel_state(self, port: int) -> dict[str, str]:
        with contextlib.suppress(redis.exceptions.RedisError):
            state = self._ask(port, "MASTER", self.service)
            if isinstance(state, dict):  # redis-py parses this reply itself
                return {str(k): str(v) for k, v in state.items()}
            return dict(zip(state[::2], state[1::2], strict=True))
        return {}

    def _master_port_from(self, port: int) -> int | None:
        with contextlib.suppress(redis.exceptions.RedisError):
            reply = self._ask(port, "GET-MASTER-ADDR-BY-NAME", self.service)
            return int(reply[1]) if reply else None
        return None

    def primary_port(self) -> int:
        """The primary's port, as the first sentinel that answers reports it."""
        for port in self.sentinel_ports:
            found = self._master_port_from(port)
            if found is not None:
                return found
        raise RuntimeError("no sentinel answered")

    def kill_primary(self) -> int:
        """SIGKILL the current primary's redis-server by pid; returns its port."""
        port = self.primary_port()
        server = next(s for s in (self.primary, self.replica) if s.port == port)
        server.stop()  # RedisServer.stop(): SIGKILL by pid, then reap
        self.killed_port = port
        return port

    def wait_for_failover(self, timeout: float = 30) -> int:
        """Waits until every sentinel names another server than the one kill_primary()
        killed (or else the first primary) as primary, and that server says it is one;
        returns its port."""
        old = self.killed_port if self.killed_port is not None else self.primary.port
        for _ in _deadline_loop(timeout, f"sentinels failing over from port {old}", 0.2):
            ports = {self._master_port_from(port) for port in self.sentinel_ports}
            if len(ports) == 1 and None not in ports and old not in ports:
                (new,) = ports
                assert new is not None
                with (
                    contextlib.suppress(redis.exceptions.RedisError),
                    redis.Redis(port=new, socket_timeout=1, decode_responses=True) as client,
                ):
                    if client.execute_command("ROLE")[0] == "master":
                        return new
        raise AssertionError("unreachable")

    def stop(self) -> None:
        for process in self.sentinel_processes:
            _stop_process(process, signal.SIGKILL)
        self.sentinel_processes.clear()
        self.replica.stop()
        self.primary.stop()


class _Pipe:
    """One proxied connection: the client's socket, the upstream socket and, per socket, the
    bytes read from its peer that still have to be written to it."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.pending = {client: bytearray(), upstream: bytearray()}
        self.reading = {client: True, upstream: True}  # False once that side sent EOF
        self.shut: set[socket.socket] = set()  # sockets the peer's EOF was passed on to
        self.frozen = False

    def peer(self, sock: socket.socket) -> socket.socket:
        return self.upstream if sock is self.client else self.client


class BlackholeProxy(_Managed):
    """A TCP proxy on a free loopback port that forwards bytes both ways, from one background
    thread (a selector loop). freeze() makes every connection open at that moment go silent in
    both directions: its bytes are held (in the kernel buffers and the proxy), its sockets stay
    open (no FIN, no RST), as behind a dropped NAT entry or a frozen server. Connections made
    afterwards pass normally. thaw() resumes the frozen ones; close() ends everything."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self.listener.getsockname()[1]
        self.listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._commands: queue.SimpleQueue[tuple[str, threading.Event]] = queue.SimpleQueue()
        self._pipes: list[_Pipe] = []
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="blackhole-proxy", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    def _start(self) -> None:
        """Already running since construction; here for the context manager."""

    def stop(self) -> None:
        self.close()

    def freeze(self) -> None:
        """Stops forwarding on every connection open now; returns once none forwards."""
        self._command("freeze")

    def thaw(self) -> None:
        """Resumes the frozen connections, held bytes first."""
        self._command("thaw")

    def close(self) -> None:
        """Closes every socket and joins the thread."""
        if self._thread.is_alive():
            self._command("close")
            self._thread.join(10)

    def _command(self, name: str) -> None:
        done = threading.Event()
        self._commands.put((name, done))
        self._wake_w.send(b"x")
        if not done.wait(10):
            raise TimeoutError(f"proxy did not {name} within 10 s")

    def _loop(self) -> None:
        try:
            while self._running:
                for key, events in self._selector.select(timeout=1):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        self._run_commands()
                    elif not key.data.frozen:  # frozen pipes are unregistered, but be sure
                        self._transfer(key.data, cast(socket.socket, key.fileobj), events)
        finally:
            for pipe in list(self._pipes):
                self._drop(pipe)
            self._selector.close()
            self.listener.close()
            self._wake_r.close()
            self._wake_w.close()

    def _run_commands(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(4096)
        while not self._commands.empty():
            name, done = self._commands.get()
            for pipe in self._pipes:
                if name == "freeze" and not pipe.frozen:
                    pipe.frozen = True
                    self._watch(pipe)
                elif name == "thaw" and pipe.frozen:
                    pipe.frozen = False
                    self._watch(pipe)
            self._running = name != "close"
            done.set()

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()  # the target is down: refuse, as it would
            return
        client.setblocking(False)
        upstream.setblocking(False)
        pipe = _Pipe(client, upstream)
        self._pipes.append(pipe)
        self._watch(pipe)

    def _watch(self, pipe: _Pipe) -> None:
        """(Re)registers the pipe's sockets for what they can do now; nothing when frozen."""
        for sock in (pipe.client, pipe.upstream):
            events = 0
            if not pipe.frozen:
                events = (selectors.EVENT_READ if pipe.reading[sock] else 0) | (
                    selectors.EVENT_WRITE if pipe.pending[sock] else 0
                )
            try:
                self._selector.get_key(sock)
                registered = True
            except KeyError:
                registered = False
            if events and registered:
                self._selector.modify(sock, events, pipe)
            elif events:
                self._selector.register(sock, events, pipe)
            elif registered:
                self._selector.unregister(sock)

    def _transfer(self, pipe: _Pipe, sock: socket.socket, events: int) -> None:
        try:
            if events & selectors.EVENT_READ:
                data = sock.recv(65536)
                peer = pipe.peer(sock)
                if data:
                    pipe.pending[peer] += data
                else:
                    pipe.reading[sock] = False
                    if not any(pipe.reading.values()):
                        self._drop(pipe)
                        return
            if events & selectors.EVENT_WRITE and pipe.pending[sock]:
                sent = sock.send(pipe.pending[sock])
                del pipe.pending[sock][:sent]
            for side in (pipe.client, pipe.upstream):
                peer_done = not pipe.reading[pipe.peer(side)] and not pipe.pending[side]
                if peer_done and side not in pipe.shut:  # pass the peer's EOF on, after its bytes
                    pipe.shut.add(side)
                    side.shutdown(socket.SHUT_WR)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(pipe)
            return
        self._watch(pipe)

    def _drop(self, pipe: _Pipe) -> None:
        for sock in (pipe.client, pipe.upstream):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            sock.close()
        with contextlib.suppress(ValueError):
            self._pipes.remove(pipe)
