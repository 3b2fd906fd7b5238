"""Shared fixtures: a real SQLite file per test and a real smsgw server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher
from bench.common import free_port as free_port  # (the tests' servers run as processes)
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from smsgw import heap
from smsgw.accounts import passwords
from smsgw.accounts import service as accounts
from smsgw.app import create_app, end_streams
from smsgw.cli.serve import HttpProtocol, Server
from smsgw.config import Settings, load_settings
from smsgw.db import migrate
from smsgw.db.engine import database_for
from smsgw.domain import clock

if TYPE_CHECKING:
    from tests.fakes.smsc import Smsc
from tests import pgcluster
from tests.clients import TLS
from tests.fakes.receiver import Receiver

API = "/api/3rdparty/v1"

# A phone's budget (routing/budgets.py) is 30 SMS parts a minute unless set; the suite's phones
# send hundreds of messages within seconds. So its servers, in this process and `smsgw serve`
# processes alike (they inherit the environment), leave phones without a budget unless a test
# sets one: tests/test_budgets.py tests the budgets, and the default of 30.
os.environ.setdefault("SMSGW_PHONE_PARTS_PER_MINUTE", "0")

# Argon2 at its production cost (64 MiB, 3 passes: ~0.1 s a hash here) was a large share of
# the suite's time. Hashes made here are still Argon2id and verify in any process, cheaply.
passwords.set_hasher(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))

# A server's start ends with a full collection and gc.freeze() (heap.py). Here, where each
# process starts server after server, each such collection walked the whole test process
# (7.5% of the suite's CPU in Python), and what each froze stayed in memory for good. The
# tests of the freeze turn it on (test_heap.py, test_link_process.py).
heap.FREEZE_AT_START = False


@pytest.fixture
def freezing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`heap.freeze_start_up` as outside the tests (a full collection, then gc.freeze()),
    from a heap with nothing frozen; what the test froze is released after it."""
    gc.unfreeze()
    monkeypatch.setattr(heap, "FREEZE_AT_START", True)
    yield
    gc.unfreeze()


@dataclass
class Account:
    login: str
    password: str


@dataclass
class LiveServer:
    """A running smsgw: its root URL and the settings it was built with."""

    url: str
    settings: Settings

    @property
    def api(self) -> str:
        return self.url + API

    def client(self, account: Account | None = None, prefix: str = API) -> httpx.Client:
        auth = (account.login, account.password) if account else None
        return httpx.Client(base_url=self.url + prefix, auth=auth, timeout=30, verify=TLS)

    def create_user(self, login: str, password: str = "correct horse battery") -> Account:
        create_account(self.settings, login, password)
        return Account(login, password)


def create_account(settings: Settings, login: str, password: str) -> None:
    async def create() -> None:
        db = database_for(settings)
        try:
            await accounts.create_user(db, login, password)
        finally:
            await db.dispose()

    asyncio.run(create())


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a test: SQLite in `data_dir`, or, in a test run on PostgreSQL, a database
    of the session's cluster."""
    values: dict[str, object] = {"data_dir": data_dir, "bootstrap_account": False}
    if _postgresql is not None and "database_url" not in overrides:
        values["database_url"] = _postgresql(data_dir)
    values.update(overrides)
    return load_settings(**values)


ENGINES = ["sqlite", "postgresql"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test runs twice, on SQLite and on a database of the session's PostgreSQL
    cluster (`engine`), except:

    - when `SMSGW_TEST_ENGINE` names one engine: every test runs on that one;
    - in a module marked `one_engine` (no database at all, or the engines chosen by the
      tests themselves, as in the PostgreSQL-only and multi-node modules): on SQLite;
    - a test marked `sqlite_only` (about SQLite itself): on SQLite.
    """
    if "engine" not in metafunc.fixturenames or os.environ.get("SMSGW_TEST_ENGINE"):
        return
    definition = metafunc.definition
    if definition.get_closest_marker("one_engine") or definition.get_closest_marker("sqlite_only"):
        return
    metafunc.parametrize("engine", ENGINES, indirect=True, scope="module")


@pytest.fixture(scope="module")
def engine(request: pytest.FixtureRequest) -> str:
    """The database engine of the test's settings (`pytest_generate_tests`; SQLite where a
    test runs on one engine only): module-scoped, so that a module's shared server
    (`shared_api`) is one per engine."""
    if request.node.get_closest_marker("one_engine") is not None:
        return "sqlite"  # whatever SMSGW_TEST_ENGINE says: the tests choose themselves
    return str(getattr(request, "param", os.environ.get("SMSGW_TEST_ENGINE", "sqlite")))


#: While a test runs on PostgreSQL: the database of each data directory `make_settings` is
#: given (made on first use, so settings made twice for one directory share it).
_postgresql: Callable[[Path], str] | None = None


@pytest.fixture(autouse=True)
def _engine_of_the_test(engine: str, request: pytest.FixtureRequest) -> Iterator[None]:
    global _postgresql, _cluster
    made: dict[Path, str] = {}  # the test's own PostgreSQL databases, by data directory
    cluster: pgcluster.Cluster | None = None
    if engine == "postgresql":
        sqlite_only = request.node.get_closest_marker("sqlite_only")
        if sqlite_only is not None:
            pytest.skip(f"about SQLite itself: {sqlite_only.args[0]}")
        cluster = request.getfixturevalue("pg_cluster")
        assert cluster is not None

        def database(data_dir: Path) -> str:
            key = Path(data_dir).resolve()
            if key not in made:
                made[key] = cluster.create_database()
                _made_here.add(made[key])
            return made[key]

        _postgresql = database
        _cluster = cluster
    try:
        yield
    finally:
        _postgresql = None
        _cluster = None
        _made_here.clear()
        if cluster is not None and made:
            cluster.drop_databases(list(made.values()))


def database_rows(settings: Settings, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Run one statement, with `?` placeholders, on the settings' database (SQLite's file or
    PostgreSQL) in a transaction of its own, committed; its rows (none when it returns none).
    Values come as each driver gives them: a timestamp is text on SQLite, a datetime on
    PostgreSQL."""
    url = settings.resolved_database_url
    if settings.database_scheme == "postgresql":
        import psycopg

        from smsgw.db.postgres import connect_arguments, placeholders

        with psycopg.connect(**connect_arguments(url)) as server:
            cursor = server.execute(placeholders(sql), tuple(params))
            return cursor.fetchall() if cursor.description is not None else []
    with closing(sqlite3.connect(make_url(url).database or "")) as file, file:
        return file.execute(sql, tuple(params)).fetchall()


def database_environment(settings: Settings) -> dict[str, str]:
    """What an `smsgw` process needs in its environment to use the settings' database, beside
    SMSGW_DATA_DIR: SMSGW_DATABASE_URL, when the test runs on PostgreSQL."""
    if settings.database_url is None:
        return {}
    return {"SMSGW_DATABASE_URL": settings.database_url}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


class _Server(Server):
    """`smsgw serve`'s server, whose main loop ends as soon as the test stops it: uvicorn's
    looks every 0.1 s (half of that, on average, of each test that starts a server)."""

    _loop: asyncio.AbstractEventLoop | None = None
    _told: asyncio.Event | None = None

    async def main_loop(self) -> None:  # uvicorn's, the wait cut short by `stop`
        self._told = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._told.wait(), 0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's (and `smsgw serve`'s: the event streams end first), which waits for the
        connections to close in steps of 1 ms rather than 0.1 s (a fixed 0.1 s first)."""
        end_streams(self.app)
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()
        deadline = time.monotonic() + self.config.timeout_graceful_shutdown
        # (polled as uvicorn does: its state has no event to wait on)
        while (state.connections or state.tasks) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        for task in state.tasks:
            task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()

    def stop(self) -> None:
        self.should_exit = True
        if self._loop is not None and self._told is not None:
            with contextlib.suppress(RuntimeError):  # (its loop is over already)
                self._loop.call_soon_threadsafe(self._told.set)


class ServerThread:
    """uvicorn serving an app in a background thread, on a socket bound here."""

    def __init__(self, settings: Settings) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(settings),
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
            proxy_headers=False,  # as `smsgw serve`: the app itself decides whom to trust
            http=HttpProtocol,  # as `smsgw serve`: an answer's writes in one step go as one
            ws="none",
        )
        app = config.app
        assert isinstance(app, FastAPI)
        self.server = _Server(config, app)  # as `smsgw serve`: streams end when told to stop
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("smsgw did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(timeout=15)
        self.sock.close()


@contextmanager
def running(settings: Settings) -> Iterator[LiveServer]:
    """A real smsgw serving on 127.0.0.1 for the duration of the block."""
    thread = ServerThread(settings)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{thread.port}", settings)
    finally:
        thread.stop()


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    with running(settings) as live:
        yield live


@pytest.fixture
def fleet_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server with short timers for phone tests: stale claims are released after 2 s of
    silence, the worker runs every 0.2 s."""
    settings = make_settings(
        tmp_path / "data",
        release_after_seconds=2,
        worker_interval_seconds=0.2,
        sse_keepalive_seconds=1,
        presence_flush_seconds=0.5,
        claim_cap=10,
    )
    with running(settings) as live:
        yield live


#: Where a test's moved clock starts (`at`).
CLOCK_START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def at() -> Iterator[list[datetime]]:
    """The clock (domain/clock), moved by assigning `at[0]`; it starts at CLOCK_START."""
    now = [CLOCK_START]
    clock.set_clock(lambda: now[0])
    try:
        yield now
    finally:
        clock.set_clock(lambda: datetime.now(UTC))


ROOT = Path(__file__).resolve().parents[1]


def bench_result(*command: str) -> dict[str, Any]:
    """Run `python -m <command>` (a benchmark of bench/) from the project's root, check it
    exits 0, and return the results JSON it wrote (deleting the file)."""
    done = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    saved = next(line for line in done.stdout.splitlines() if line.startswith("results: "))
    path = ROOT / saved.split()[1]
    try:
        result: dict[str, Any] = json.loads(path.read_text())
    finally:
        path.unlink()
    return result


@pytest.fixture
def alice(server: LiveServer) -> Account:
    return server.create_user("alice")


@pytest.fixture
def api(server: LiveServer, alice: Account) -> Iterator[httpx.Client]:
    """An HTTP client of the 3rd-party API, signed in as alice."""
    with server.client(alice) as client:
        yield client


def module_settings(data_dir: Path, engine: str, request: pytest.FixtureRequest) -> Settings:
    """`make_settings` for a module-scoped fixture, on the module's engine (`engine`): a
    module run on both engines gets one such fixture per engine."""
    if engine == "postgresql":
        cluster: pgcluster.Cluster = request.getfixturevalue("pg_cluster")
        return make_settings(data_dir, database_url=cluster.create_database())
    return make_settings(data_dir)


@pytest.fixture(scope="module")
def shared_api(
    tmp_path_factory: pytest.TempPathFactory, engine: str, request: pytest.FixtureRequest
) -> Iterator[httpx.Client]:
    """Like `api`, but one server for all the module's tests that ask for it (starting a
    server is most of a small test's time): for tests whose requests leave nothing that
    another test reads, such as refused requests."""
    settings = module_settings(tmp_path_factory.mktemp("shared") / "data", engine, request)
    with running(settings) as server:
        client = server.client(server.create_user("alice"))
        with client:
            yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 (tests/fakes/receiver.py)."""
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    """The npm `smpp` SMSC simulator (tests/fakes/smsc-sim.js) of the carrier-link tests."""
    from tests.fakes.smsc import Smsc  # it imports this module

    started = Smsc().start()
    try:
        yield started
        broken = started.binds()["broken"]
    finally:
        started.stop()
    # smsgw never writes a PDU the simulator cannot frame (smpp34's short deliver_sm_resp
    # of a full queue did: links/session.py INBOUND_CAPACITY)
    assert broken == 0, f"the simulator closed {broken} session(s) on a PDU it could not read"


#: PostgreSQL databases `make_settings` made in the session's cluster for this test process
#: (`_engine_of_the_test`): empty, owned by postgres; and the cluster.
_made_here: set[str] = set()
_cluster: pgcluster.Cluster | None = None


@pytest.fixture(autouse=True, scope="session")
def _schema_from_a_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A new database brought to the newest revision in this process is a copy of one this
    process migrated once: a SQLite file copied, a PostgreSQL database made again from a
    template database. Alembic's migrations took about 0.2 s of CPU (and many syncs) for each
    of the suite's thousands of databases. Everything else goes to Alembic as before: a
    database with a schema (or data), an older revision, a PostgreSQL database the test made
    itself, and `smsgw` run as a process. tests/test_migrations.py and
    tests/test_migrations_postgresql.py check that the migrations make what the models say
    (their tests run Alembic: `real_migrations`)."""
    real = migrate.upgrade
    sqlite_template: list[Path] = []
    pg_templates: dict[int, str] = {}  # per cluster (its port): the template database

    def sqlite_copy(path: Path) -> None:
        if not sqlite_template:
            settings = load_settings(
                data_dir=tmp_path_factory.mktemp("schema") / "data", bootstrap_account=False
            )
            real(settings)
            made = migrate.sqlite_path(settings)
            assert made is not None and not Path(f"{made}-wal").exists()
            sqlite_template.append(made)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sqlite_template[0], path)

    def postgresql_copy(cluster: pgcluster.Cluster, url: str) -> bool:
        if cluster.port not in pg_templates:
            template = cluster.create_database()
            real(load_settings(
                data_dir=tmp_path_factory.mktemp("schema"), database_url=template,
                bootstrap_account=False,
            ))  # fmt: skip
            pg_templates[cluster.port] = template
        return cluster.remake_from(url, pg_templates[cluster.port])

    def upgrade(settings: Settings, revision: str = "head") -> migrate.Outcome:
        if revision == "head" and not _real_migrations:
            path = migrate.sqlite_path(settings)
            if path is not None and _new_file(path):
                sqlite_copy(path)
                return "created"
            url = settings.database_url
            if url in _made_here and _cluster is not None and postgresql_copy(_cluster, url):
                _made_here.discard(url)
                return "created"
        return real(settings, revision)

    migrate.upgrade = upgrade  # type: ignore[assignment]
    try:
        yield
    finally:
        migrate.upgrade = real  # type: ignore[assignment]


#: Whether the running test asks for Alembic itself (marker `real_migrations`).
_real_migrations = False


@pytest.fixture(autouse=True)
def _migrations_of_the_test(request: pytest.FixtureRequest) -> Iterator[None]:
    global _real_migrations
    _real_migrations = request.node.get_closest_marker("real_migrations") is not None
    try:
        yield
    finally:
        _real_migrations = False


def _new_file(path: Path) -> bool:
    """Whether a SQLite file is not there yet, or empty with no journal beside it."""
    if not path.exists():
        return True
    journals = (Path(f"{path}{end}") for end in ("-wal", "-journal"))
    return path.stat().st_size == 0 and not any(journal.exists() for journal in journals)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pgcluster.Cluster]:
    """A PostgreSQL cluster for this test process (tests/pgcluster.py), started by the first
    test that asks for it; each test makes its own database in it."""
    cluster = pgcluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
