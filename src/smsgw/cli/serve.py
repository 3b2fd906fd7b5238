"""`smsgw serve`: run the HTTP server, in one process or several (SMSGW_WORKERS).

The command itself is declared in cli/__init__.py, which imports this module (and with it
uvicorn, FastAPI and the whole application) only when the server starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

import typer
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from smsgw import metrics
from smsgw.accounts import service as accounts
from smsgw.app import announce_account, announce_migration, create_app, end_streams
from smsgw.cli.common import (
    configure_logging,
    fail,
    settings_or_exit,
    usable_database_or_exit,
)
from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.engine import database_for
from smsgw.events.bus import Cluster

log = logging.getLogger("smsgw")

#: Builds one process's application (create_app, or the benchmark's app around it).
AppBuilder = Callable[[Settings, Cluster | None], FastAPI]
#: prctl(2): the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1
#: How long the processes get to finish their requests once told to stop.
STOP_SECONDS = 10.0


def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Start the gateway (applies migrations first, unless SMSGW_AUTO_MIGRATE=false)."""
    settings = settings_or_exit(host=host, port=port, workers=workers)
    usable_database_or_exit(settings)  # fail here, in one line, on an unusable database
    if not port_is_free(settings.host, settings.port):
        raise typer.Exit(1)
    with serving(settings):
        same_secret_or_exit(settings)
        if settings.workers == 1:
            print(f"smsgw listening on http://{settings.host}:{settings.port}", flush=True)
            run_server(create_app(settings), settings)
            return
        status = supervise(settings, create_app)
    if status:
        raise typer.Exit(status)


def same_secret_or_exit(settings: Settings) -> None:
    """On PostgreSQL, record this node's secret, or end in one line (status 2) when the
    database's nodes sign tokens with another one (tokens/rotation.py). Recorded here, not
    only checked: of two nodes with different secrets starting at once on a new database,
    the one that records second is refused here too, in one line (in the application's
    start-up it would be a traceback). With SMSGW_AUTO_MIGRATE the schema is brought up to
    date first (as the application's start-up would), so there is a table to record in."""
    if settings.database_scheme != "postgresql":
        return
    from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError

    from smsgw.tokens import rotation
    from smsgw.tokens.service import TokenService

    async def record() -> None:
        db = database_for(settings)
        try:
            await TokenService(settings, db).note_secret()
        except ProgrammingError as exc:
            if getattr(exc.orig, "sqlstate", None) != "42P01":  # not "no such table"
                raise
            # No schema (SMSGW_AUTO_MIGRATE=false): the application's start-up says so.
        finally:
            await db.dispose()

    try:
        if settings.auto_migrate:
            announce_migration(migrate.upgrade(settings), settings)
        asyncio.run(record())
    except rotation.OtherSecret:
        fail(rotation.OTHER_SIGNER, 2)
    except (OperationalError, InterfaceError) as exc:  # lost since the first look
        from smsgw.db import postgres

        problem = postgres.problem_with(settings.resolved_database_url) or type(exc).__name__
        fail(f"{problem} (see SMSGW_DATABASE_URL)", 2)
    except ProgrammingError as exc:  # a role that may not read or write system_values...
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        fail(f"cannot use this PostgreSQL database: {first} (see SMSGW_DATABASE_URL)", 2)


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[None]:
    """On PostgreSQL, hold the node lock shared while serving (any number of nodes do):
    a node does not start while `smsgw db copy` fills the database, in one line."""
    if settings.database_scheme != "postgresql":
        yield
        return
    from smsgw.db import postgres

    url = settings.resolved_database_url
    held = postgres.hold_node_lock(url)
    if held is None:
        fail(postgres.COPY_UNDER_WAY, 2)
    with postgres.NodeLock(url, held):  # taken again if PostgreSQL ends its session
        yield


class Server(uvicorn.Server):
    """uvicorn's server, which ends the application's event streams as soon as it is told to
    stop: phones hold theirs open for hours, and a stop would otherwise wait out
    `timeout_graceful_shutdown` for them (requests in progress still finish)."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        end_streams(self.app)
        await super().shutdown(sockets=sockets)


#: a write this long goes out on its own (a large answer's body: joining would copy it), and
#: what is held goes out once it is this long (the transport's flow control sees it then)
_JOINED_AT_MOST = 64 * 1024


class OneWrite:
    """A connection's transport whose writes made in one step of the event loop go out as
    one: uvicorn writes an answer's status line and headers, then its body, as two writes,
    and each is a send of its own (on loopback, the receiver's side of TCP runs in the
    sender's call). Held for the rest of the step only, so a streamed answer's parts go out
    as they are written."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: list[bytes] = []
        self._size = 0
        self.is_closing = transport.is_closing
        self.get_extra_info = transport.get_extra_info
        self.pause_reading = transport.pause_reading
        self.resume_reading = transport.resume_reading
        self.abort = transport.abort

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) >= _JOINED_AT_MOST:  # after what is held, as it is
            self.flush()
            self._transport.write(data)
            return
        if not self._held:
            asyncio.get_running_loop().call_soon(self.flush)
        self._held.append(bytes(data))
        self._size += len(data)
        if self._size >= _JOINED_AT_MOST:
            self.flush()

    def flush(self) -> None:
        """Send what is held, as one write."""
        if self._held:
            data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
            self._held.clear()
            self._size = 0
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a transport whose writes in one step go as one."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.one_write = OneWrite(transport)  # type: ignore[arg-type]
        super().connection_made(self.one_write)  # type: ignore[arg-type]

    def eof_received(self) -> None:
        # The client closed its side (a half-close, after its request): once this returns,
        # the event loop closes the transport itself, not through OneWrite, and what is held
        # would be dropped; an answer written before the close goes out, as without OneWrite.
        self.one_write.flush()
        super().eof_received()


def run_server(app: FastAPI, settings: Settings, sock: socket.socket | None = None) -> None:
    """Serve `app` the way `smsgw serve` does (the benchmarks use it too)."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        proxy_headers=False,  # the app trusts forwarded headers itself (forwarded.py)
        server_header=False,
        timeout_graceful_shutdown=5,
        http=HttpProtocol,
        ws="none",  # no WebSocket route; an upgrade would take HttpProtocol's transport as it is
    )
    configure_logging(settings.log_level)  # after uvicorn's own (made by its Config)
    server = Server(config, app)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn has shut down cleanly
        server.run(sockets=[sock] if sock is not None else None)
    if not server.started:  # e.g. the port is taken: uvicorn said why
        raise SystemExit(3)


def supervise(settings: Settings, build: AppBuilder) -> int:
    """Run `settings.workers` server processes on one port and one database until told to
    stop (SIGINT, SIGTERM) or until one of them dies, which stops the others too (so that a
    service manager restarts a whole, consistent server). Returns the exit status.

    Migrations and the first account happen here, once, before any process serves.
    """
    if not port_is_free(settings.host, settings.port):
        return 1
    prepare(settings)
    node_settings = settings.model_copy(update={"auto_migrate": False, "bootstrap_account": False})
    name = f"{os.getpid()}-{secrets.token_hex(4)}"
    metrics_dir = tempfile.mkdtemp(prefix="smsgw-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # the processes add up their counters
    spawn = multiprocessing.get_context("spawn")
    nodes: list[BaseProcess] = []
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, stop) for sig in stops}
    try:
        for index in range(settings.workers):
            cluster = Cluster(name, index, settings.workers)
            node = spawn.Process(
                target=run_node,
                args=(build, node_settings, cluster, os.getpid()),
                name=f"smsgw-{index}",
            )
            node.start()
            nodes.append(node)
        print(
            f"smsgw listening on http://{settings.host}:{settings.port} "
            f"({settings.workers} processes)",
            flush=True,
        )
        while not stopping and all(node.is_alive() for node in nodes):
            wait([node.sentinel for node in nodes], timeout=0.2)
        failed = [node for node in nodes if not node.is_alive()] if not stopping else []
        for dead in failed:
            print(f"error: server process {dead.name} exited ({dead.exitcode})", file=sys.stderr)
        return 1 if failed else 0
    finally:
        stop_nodes(nodes)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def prepare(settings: Settings) -> None:
    """What a server does once on start: migrate, and make the first account if due."""
    if settings.auto_migrate:
        announce_migration(migrate.upgrade(settings), settings)
    if settings.bootstrap_account:
        account = asyncio.run(_bootstrap(settings))
        if account is not None:
            announce_account(account.login, account.password, settings)


async def _bootstrap(settings: Settings) -> accounts.NewAccount | None:
    db = database_for(settings)
    try:
        return await accounts.bootstrap(db)
    finally:
        await db.dispose()


def stop_nodes(nodes: list[BaseProcess]) -> None:
    """SIGTERM (uvicorn's graceful shutdown) to every process, then SIGKILL to laggards."""
    for node in nodes:
        if node.is_alive():
            with contextlib.suppress(ProcessLookupError):
                node.terminate()
    for node in nodes:
        node.join(STOP_SECONDS)
        if node.is_alive():
            node.kill()
            node.join()
        if node.pid is not None:
            metrics.process_exited(node.pid)


def run_node(build: AppBuilder, settings: Settings, cluster: Cluster, parent: int) -> None:
    """One server process: its own socket on the shared port, its own application. It
    stops (SIGTERM) if the supervisor dies, even by SIGKILL, rather than serve on alone."""
    with contextlib.suppress(OSError, AttributeError):  # Linux only, as SMSGW_WORKERS > 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the line above
        return
    run_server(build(settings, cluster), settings, shared_socket(settings.host, settings.port))


def port_is_free(host: str, port: int) -> bool:
    """False, with a clear error, if something listens on the port already: the processes
    bind it with SO_REUSEPORT, which would otherwise share it with another server of this
    user."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            print(
                f"error: cannot listen on {host}:{port}: {exc.strerror}; is smsgw already "
                "running? Choose another port with --port or SMSGW_PORT.",
                file=sys.stderr,
                flush=True,
            )
            return False
    return True


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind too (the kernel spreads connections)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock
