"""The database handle: a pool for reads and one serialised writer for SQLite.

SQLite allows one writer at a time. Rather than letting writers collide and spin on
`busy_timeout`, smsgw keeps a single write connection whose transactions start with
`BEGIN IMMEDIATE`: the pool hands it out in turn, so writes queue in order and a
transaction never fails half-way on a lock upgrade.

Two ways in:

- `read()` / `write()` give an async SQLAlchemy connection (aiosqlite) for a block of awaited
  queries. Each statement crosses to the driver's thread and back and goes through
  SQLAlchemy's execution machinery: about a millisecond of CPU per short transaction, fine
  for occasional work.
- `read_unit(work)` / `write_unit(work)` run a unit of work, `async def work(conn)`, on a
  plain DB-API connection wrapped as a `UnitConnection`: statements written with `?`
  placeholders (build them with `RowInsert` and `ColumnReader`, which apply the column
  types as SQLAlchemy would), no SQLAlchemy machinery per statement. They are for the hot
  paths (queueing a message, a phone's pull and reports). A unit awaits nothing but its
  connection's statements: on SQLite these never suspend, so a unit runs in one piece on
  the event loop. `write_unit` does group commit: the units submitted while a commit is in
  progress run together in the next transaction, under one COMMIT, so one WAL sync serves
  many requests; a unit that raises is rolled back alone and gets its exception (the batch
  is then run again with a SAVEPOINT around each unit, so a unit may run twice: it must do
  nothing but use its connection). It returns only after that COMMIT: durability is that
  of one transaction per unit. Only the COMMIT, the WAL sync, goes to the write thread (a
  batch that changed no row commits on the loop: nothing to sync). The processes that
  write to one database (several server processes, the links' process, a command such as
  `smsgw send`) take turns at SQLite's write lock through a file lock (db/turn.py): a batch
  waits for its turn on a thread, woken the moment the other process's COMMIT is over, and
  takes the units queued meanwhile. When a writer that takes no turn holds the write lock
  (a migration, another program), the loop tries again every `LOOP_LOCK_RETRY_SECONDS`,
  then less often (`_LockWaits`), serving requests meanwhile, for up to `BUSY_TIMEOUT_MS`
  from the moment the batch asked for its turn.
- `read_unit(work)` runs `work(connection)` in a read transaction right on the event loop,
  for a lookup by key that takes microseconds (the credential check every API request
  makes): a thread hop costs more than such a query. WAL readers do not wait for writers;
  in the rare case one would (SQLITE_BUSY: recovery after a crash), it gives up after
  `LOOP_BUSY_TIMEOUT_MS` and tries again a moment later, so the loop is never held long.

Both writers take the same turns (`_write_turn` within the process, then the file lock), so
within a process there is still one write transaction at a time. Do not call `write_unit`
inside a `write()` block: it would wait for the turn that block holds. And since a
`write()` block holds the turns across every statement's trip through a busy event loop
(tens to hundreds of milliseconds under load, while every queued message, of every process,
waits for its commit), periodic work looks first with `read()` and takes the turns only
when there is something to change.
"""

from __future__ import annotations

import asyncio
import functools
import re
import sqlite3
import sys
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, cast

from sqlalchemy import Column, ColumnElement, Table, and_, delete, event, select
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from smsgw.config import Settings
from smsgw.db import space
from smsgw.db.turn import Turn

T = TypeVar("T")

#: How long a connection waits for a lock held by another one (another process, mostly).
BUSY_TIMEOUT_MS = 10_000
#: How long the health check's ping may wait for a lock (its own limit: health/service.py).
PING_TIMEOUT_SECONDS = 5.0
#: How long `read_unit` may hold the event loop waiting on a lock before trying again later.
LOOP_BUSY_TIMEOUT_MS = 20
#: When a writer that takes no turn (db/turn.py: a migration, another program) holds
#: the write lock, how often the loop tries again to take it: every LOOP_LOCK_RETRY_SECONDS
#: for LOOP_LOCK_PATIENCE_SECONDS (such a write holds it a few milliseconds), then less and
#: less often (the wait doubling up to LOOP_LOCK_MAX_SECONDS: a long write), for up to
#: BUSY_TIMEOUT_MS in all. Every 2 ms, not sooner: earlier tries mostly fail (a statement and
#: a timer each), and a later one finds more units queued, to commit in one batch (before
#: the turn, when two server processes met this way: docs/performance.md, 0.5 ms cost them
#: about 30% more CPU per message).
LOOP_LOCK_RETRY_SECONDS = 0.002
LOOP_LOCK_PATIENCE_SECONDS = 0.05
LOOP_LOCK_MAX_SECONDS = 0.01
#: Most units of work one group-commit transaction takes; the rest wait for the next one.
MAX_BATCH = 256
#: Most names (`write_unit`'s locks) one transaction locks: on PostgreSQL each takes a place
#: in the server's shared lock table, which has room for about 64 per connection it allows
#: (max_locks_per_transaction) and fails every transaction that finds it full. A batch stops
#: taking units before it would pass this; a unit that names more names none.
MAX_BATCH_LOCKS = 256
#: Group commit's commit delay. Each transaction writes every page it touched to the WAL
#: (on PostgreSQL too, and syncs it once): a message's insert touches about 15 (the last
#: pages of its table and indexes), which the messages of one batch share. At a steady
#: 1,000 sends a second most batches held one or two messages: 30-60 KB of WAL and 0.81
#: ms of the server's CPU a message, 0.62 with this wait (docs/performance.md). So once
#: units queue while a batch runs (others write at once), a batch begins GATHER_SECONDS
#: after the one before it began at the soonest, unless GATHER_BELOW units wait already: a
#: batch that took that long (a busy server) is followed at once. A wait that brings no
#: unit ends the waiting until units queue during a batch again, so a lone writer (one
#: unit at a time: a test's requests one after the other) never waits more than once.
GATHER_SECONDS = 0.002
GATHER_BELOW = 16
#: SQLite's dialect, whose type processing `RowInsert`, `column_reader` and `column_writer`
#: apply on its unit connections (as SQLAlchemy's engines do).
SQLITE = SQLiteDialect_pysqlite()


class DatabaseUnsupported(Exception):
    """The configured database cannot be used by this version of smsgw."""


class Rows(Protocol):
    """What a unit's statement gives back: its rows (fetched, or to iterate) and how many
    rows it changed."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class UnitConnection:
    """The connection a unit of work gets (`read_unit`, `write_unit`): DB-API statements
    with `?` placeholders, awaited. Values are bound and read as SQLAlchemy would for
    `dialect` (`RowInsert`, `ColumnReader`, `ColumnWriter`). `SQLiteUnit` here;
    db/postgres.PostgresUnit for PostgreSQL."""

    __slots__ = ()
    dialect: Dialect

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> Rows:
        raise NotImplementedError

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        raise NotImplementedError


class SQLiteUnit(UnitConnection):
    """A sqlite3 connection as a unit's: its statements run at once (nothing is awaited for
    real), so a unit runs in one piece on the event loop."""

    __slots__ = ("_conn",)
    dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> Rows:
        return self._conn.execute(sql, tuple(params))

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        self._conn.executemany(sql, [tuple(row) for row in rows])


@functools.lru_cache(maxsize=1024)
def placeholders(sql: str) -> str:
    """A unit's statement in psycopg's placeholders: `?` -> `%s`, a literal `%` doubled.
    The units' SQL holds no `?` in a string literal or a name (they are written so)."""
    return sql.replace("%", "%%").replace("?", "%s")


class DriverUnit(UnitConnection):
    """SQLAlchemy's async connection (`Database.read()`, `write()`) as a unit's: for the
    statements of a unit that may take long (a deep page, a count over a time range), which
    then run in the driver's thread (SQLite) or wait on the socket, not on the event loop as
    `read_unit`'s do on SQLite. The same unit code serves both."""

    __slots__ = ("_conn", "dialect")

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self.dialect = conn.dialect

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> Rows:
        if self.dialect.name != "sqlite":
            sql = placeholders(sql)
        # A CursorResult: its rows fetched (async), its fetchall a list.
        return cast(Rows, await self._conn.exec_driver_sql(sql, tuple(params)))

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        if self.dialect.name != "sqlite":
            sql = placeholders(sql)
        await self._conn.exec_driver_sql(sql, [tuple(row) for row in rows])


#: A unit of work (db/engine.py): awaits only its connection's statements.
Unit = Callable[[UnitConnection], Awaitable[T]]


class Interleaved(Generic[T]):
    """A unit of work that may run interleaved with the other such units of its batch
    (`write_unit(work, interleaved=True)`): on PostgreSQL they run side by side, so their
    statements share the batch's round trips (db/postgres.py). Only for a unit that reads
    nothing another interleaved unit may write, except what a unique constraint guards
    (two messages of one id: the batch then runs again, unit after unit), and that awaits
    its statements one at a time, as every unit does (a round goes when each unit still
    running awaits one). On SQLite it runs as any unit: its statements cost microseconds on
    the loop, with no round trip to share."""

    __slots__ = ("work",)

    def __init__(self, work: Unit[T]) -> None:
        self.work = work

    def __call__(self, conn: UnitConnection) -> Awaitable[T]:
        return self.work(conn)


@dataclass
class Job(Generic[T]):
    work: Unit[T]
    future: asyncio.Future[T]
    #: What the unit names for its batch to lock first (`write_unit`'s `locks`).
    locks: tuple[str, ...] = ()


#: Outcome of one unit of work in a batch: (True, its value) or (False, what it raised).
_Outcome = tuple[bool, Any]


def _batch_end(queue: list[Job[Any]]) -> int:
    """How many of the queued units the next batch takes: MAX_BATCH at most, and no more
    than MAX_BATCH_LOCKS names between them (the first unit always)."""
    names = 0
    for at, job in enumerate(queue[:MAX_BATCH]):
        names += len(job.locks)
        if names > MAX_BATCH_LOCKS and at > 0:
            return at
    return min(len(queue), MAX_BATCH)


def settle(batch: list[Job[Any]], outcomes: list[_Outcome]) -> None:
    """Give each unit's caller its outcome (those gone already are passed over)."""
    for job, (ok, value) in zip(batch, outcomes, strict=True):
        if job.future.done():
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


def database_for(settings: Settings) -> Database:
    """The database the settings name: SQLite's `Database`, or PostgreSQL's
    (db/postgres.PostgresDatabase, which needs the `postgresql` extra)."""
    if settings.database_scheme == "postgresql":
        from smsgw.db.postgres import PostgresDatabase

        return PostgresDatabase(settings)
    return Database(settings)


class Database:
    """Owns the engines. `read()` and `write()` give connections inside a transaction.

    This class runs on SQLite; db/postgres.PostgresDatabase is the same on PostgreSQL
    (`database_for` picks)."""

    #: Whether nodes on other machines may share it (PostgreSQL), or only this one's.
    shared = False
    #: Whether a batch may wait for more units, and when the last one began (`_flush`).
    _gathering = False
    _batch_began = 0.0

    def __init__(self, settings: Settings) -> None:
        self.url = settings.resolved_database_url
        if settings.database_scheme != "sqlite":
            raise DatabaseUnsupported("Database runs on SQLite: database_for() gives PostgreSQL's")
        ensure_sqlite_directory(self.url)
        self.synchronous = settings.sqlite_synchronous.value
        self.reader = _sqlite_engine(self.url, self.synchronous, immediate=False, pool_size=4)
        self.writer = _sqlite_engine(self.url, self.synchronous, immediate=True, pool_size=1)
        self.path = make_url(self.url).database or ""
        # The thread and connections of read_unit/write_unit: made on first use, so a
        # Database built only to check the settings starts nothing.
        self._write_thread: ThreadPoolExecutor | None = None
        self._loop_connection: sqlite3.Connection | None = None
        self._write_connection: sqlite3.Connection | None = None
        self._version_connection: sqlite3.Connection | None = None
        self._write_turn_lock: asyncio.Lock | None = None
        self._queue: list[Job[Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        #: Taken by group commit's batches and `write()` blocks: a file's lock that hands
        #: SQLite's write lock over between processes without polling.
        self._turn = Turn(self.path) if self.path not in ("", ":memory:") else None

    @property
    def _write_turn(self) -> asyncio.Lock:
        if self._write_turn_lock is None:
            self._write_turn_lock = asyncio.Lock()
        return self._write_turn_lock

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a read transaction (rolled back at the end)."""
        async with self.reader.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction, committed when the block exits cleanly
        (holding the write turns, as a batch of units does)."""
        async with self._turns(), self.writer.begin() as conn:
            yield conn

    def data_version(self) -> int | None:
        """A number that changes whenever another connection commits (SQLite's `PRAGMA
        data_version` on a connection kept for it): reading it touches no table."""
        if self._version_connection is None:
            self._version_connection = self._connect(busy_timeout_ms=LOOP_BUSY_TIMEOUT_MS)
        return int(self._version_connection.execute("PRAGMA data_version").fetchone()[0])

    async def ping(self) -> None:
        """A round trip through a new connection: the file opened afresh (never created)
        and its schema page read, on a thread; raises when that fails."""
        await asyncio.to_thread(_ping, self.path)

    async def read_unit(self, work: Unit[T]) -> T:
        """`work(connection)` in one read transaction on the event loop.

        Only for work that takes microseconds (a lookup by an indexed key); if the database
        is busy, it is tried again a moment later (the loop serving meanwhile).
        """
        waits = _LockWaits()
        while True:
            try:
                if self._loop_connection is None:
                    self._loop_connection = self._connect(busy_timeout_ms=LOOP_BUSY_TIMEOUT_MS)
                return await _in_read_transaction(self._loop_connection, work)
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
            await waits.next()

    async def write_unit(
        self, work: Unit[T], interleaved: bool = False, locks: Iterable[str] = ()
    ) -> T:
        """Run `work(connection)` in a write transaction; its result once committed.

        If `work` raises, none of its changes are kept and its exception is raised here; the
        other units committed with it are not affected. If the COMMIT fails, every unit of
        that transaction gets the error. With `interleaved`, the unit may run side by side
        with the batch's other interleaved units (`Interleaved` says when that is safe).

        `locks` names what the unit will lock that a unit of another node may lock in the
        same moment (a message its reports change, say). On PostgreSQL the batch takes a lock
        on each name of its units before any of them runs, every batch in the same order, so
        two nodes' batches never each hold a name's rows while the other waits for them (a
        deadlock, which PostgreSQL breaks only after a second); on SQLite, where one batch
        writes at a time, they are not needed. A unit that names more than MAX_BATCH_LOCKS
        names none: its row locks alone keep it right, as they keep every unit.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        named = tuple(locks)
        if len(named) > MAX_BATCH_LOCKS:  # (a link's recovery of all it holds): row locks only
            named = ()
        job = Job(Interleaved(work) if interleaved else work, future, named)
        self._queue.append(job)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        """Commit queued units, batch after batch, while any are waiting (both engines;
        `_run_batch` is each one's own)."""
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                pause = self._batch_began + GATHER_SECONDS - loop.time()
                if self._gathering and pause > 0 and len(self._queue) < GATHER_BELOW:
                    waiting = len(self._queue)
                    await asyncio.sleep(pause)
                    self._gathering = len(self._queue) > waiting  # in vain: no more waits
                self._batch_began = loop.time()
                async with self._batch_turn():
                    # Take the batch only now: what queued while waiting for the turn joins it.
                    taken = _batch_end(self._queue)
                    batch, self._queue = self._queue[:taken], self._queue[taken:]
                    batch = [job for job in batch if not job.future.done()]  # caller gone
                    if not batch:
                        continue
                    try:
                        locks = {name for job in batch for name in job.locks}
                        outcomes = await self._run_batch([job.work for job in batch], locks)
                    except Exception as exc:  # the COMMIT failed: nothing of the batch is kept
                        outcomes = [(False, exc)] * len(batch)
                    except BaseException:  # cancelled: its callers must not wait forever
                        for job in batch:
                            job.future.cancel()
                        raise
                settle(batch, outcomes)
                if self._queue:  # units came while it ran: others write at once
                    self._gathering = True
        except BaseException:  # cancelled: the units still queued will never run
            for job in self._queue:
                job.future.cancel()
            self._queue = []
            raise
        finally:
            self._flusher = None

    def _batch_turn(self) -> AbstractAsyncContextManager[Any]:
        """What a batch holds while it runs: this process's write turn (`write()` takes it
        too), then the turn between processes (db/turn.py), which `_run_batch` gives back
        right after its COMMIT."""
        return self._turns()

    @asynccontextmanager
    async def _turns(self) -> AsyncIterator[None]:
        async with self._write_turn:
            self._turn_asked = time.monotonic()
            if self._turn is not None:
                await self._turn.take(BUSY_TIMEOUT_MS / 1000)
            try:
                yield
            finally:
                if self._turn is not None:
                    self._turn.give()

    #: When the batch that runs asked for the turn between processes: SQLite's lock is then
    #: waited for what is left of BUSY_TIMEOUT_MS (`_run_batch`), not that long again.
    _turn_asked = 0.0

    async def _run_batch(
        self, works: list[Unit[Any]], locks: Collection[str] = ()
    ) -> list[_Outcome]:
        """The batch in one transaction, committed: its units on the loop, the COMMIT (a WAL
        sync) on the write thread; waiting on the loop while another process holds the
        lock (the batch's `locks`, write_unit's, are that one lock on SQLite)."""
        loop = asyncio.get_running_loop()
        if self._write_thread is None:
            self._write_thread = ThreadPoolExecutor(1, "smsgw-db-write")
        if self._write_connection is None:  # PRAGMAs may wait: apart
            await loop.run_in_executor(self._write_thread, self._writer_connection)
        waits = _LockWaits(since=self._turn_asked or None)
        while (ran := await self._run_batch_now(works)) is None:
            # A writer that takes no turn holds the lock (a migration, another program; or
            # this batch went without its turn): try again in a moment, the loop serving
            # meanwhile.
            await waits.next()
        outcomes, wrote = ran
        if wrote:
            await _to_the_end(loop.run_in_executor(self._write_thread, self._commit_and_give))
        else:  # nothing written (pulls that found nothing, repeated reports): no WAL sync,
            self._commit()  # so no thread hop
        return outcomes

    def _commit_and_give(self) -> None:
        """`_commit`, then the turn between processes given back at once (on the write
        thread: not once the busy loop comes back to this batch)."""
        try:
            self._commit()
        finally:
            if self._turn is not None:
                self._turn.give()

    async def _run_batch_now(self, works: list[Unit[Any]]) -> tuple[list[_Outcome], bool] | None:
        """On the event loop: BEGIN and the batch's units, leaving the COMMIT to the caller:
        the outcomes, and whether the transaction wrote anything (its COMMIT is then a WAL
        sync, for the write thread). None, with nothing done, when another process holds the
        lock.

        Why on the loop: the units are a few indexed statements each, but every statement
        releases the GIL around SQLite and must win it back from the busy event loop. On
        the write thread that made a unit take about a millisecond of waiting for 0.2 ms of
        work, and the group-commit pipeline, not the loop, set the API's throughput.
        """
        conn = self._writer_connection()  # its busy timeout is 0: never sleep on the loop
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
            return None  # _flush tries again in a moment
        changes = conn.total_changes
        outcomes = await self._run_units(conn, works)
        # A statement that failed half-way changed no row but may have left pages written.
        failed = not all(ok for ok, _ in outcomes)
        return outcomes, failed or conn.total_changes != changes

    async def _run_units(self, conn: sqlite3.Connection, works: list[Unit[Any]]) -> list[_Outcome]:
        """The units in the open transaction, which is left open (for `_commit`) unless
        the only unit failed.

        The units first run one after the other in a plain transaction. If one raises, that
        transaction is rolled back and the batch runs again with each unit inside its own
        SAVEPOINT, so that only the failing units lose their changes. (SAVEPOINTs would cost
        a third of the time of storing a message, and failing units are the exception.)
        """
        try:
            unit = SQLiteUnit(conn)
            try:
                return [(True, await work(unit)) for work in works]
            except Exception as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if len(works) == 1:
                    return [(False, exc)]
                with _patient(conn):  # another process may have taken the lock meanwhile
                    conn.execute("BEGIN IMMEDIATE")
                return await _run_apart(conn, works)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _commit(self) -> None:
        """COMMIT the write connection's open transaction, if any (rolled back on failure)."""
        conn = self._writer_connection()
        if not conn.in_transaction:
            return
        try:
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or not conn.in_transaction:
                    raise
                # Not expected in WAL mode (see _writer_connection); should it happen, wait
                # as any connection would: this runs on the write thread, not the loop.
                with _patient(conn):
                    conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _writer_connection(self) -> sqlite3.Connection:
        """The one connection of group commit, used by the loop and the write thread (its
        COMMIT) in turn, never at once: `_flush` runs one batch at a time.

        Its busy timeout is 0 once it is set up: its BEGIN runs on the loop, which must not
        sleep in SQLite's busy handler (`_flush` tries again in a moment instead; set for
        good rather than around each BEGIN, which cost two statements a batch). Its COMMIT
        does not wait for a lock: in WAL mode the transaction holds the write lock from its
        BEGIN IMMEDIATE, and the checkpoint a COMMIT may run is a passive one."""
        if self._write_connection is None:
            conn = self._connect(busy_timeout_ms=BUSY_TIMEOUT_MS)  # its PRAGMAs may wait
            conn.execute("PRAGMA busy_timeout=0")
            self._write_connection = conn
        return self._write_connection

    def _connect(self, *, busy_timeout_ms: int) -> sqlite3.Connection:
        # Not bound to its thread: dispose() closes every connection from the loop.
        conn = sqlite3.connect(
            self.path,
            timeout=busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            _set_pragmas(conn, self.synchronous, busy_timeout_ms)
        except BaseException:
            conn.close()
            raise
        return conn

    async def reclaim_space(self, step_pages: int = space.VACUUM_STEP_PAGES) -> int:
        """Give the file's free pages back to the file system (db/space.py), `step_pages`
        at a time, each step a write transaction of its own on the write thread, taking
        the write turns as a batch does; looks first without them. How many pages went."""
        free = await self.read_unit(_freelist_count)
        if free == 0:
            return 0
        loop = asyncio.get_running_loop()
        if self._write_thread is None:
            self._write_thread = ThreadPoolExecutor(1, "smsgw-db-write")
        freed = 0
        while True:
            async with self._turns():
                step = await _to_the_end(
                    loop.run_in_executor(
                        self._write_thread,
                        lambda: space.vacuum_step(self._writer_connection(), step_pages),
                    )
                )
            freed += step
            if step < step_pages:
                return freed
            await asyncio.sleep(0)

    async def dispose(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.reader.dispose()
        await self.writer.dispose()
        if self._write_thread is not None:
            await asyncio.to_thread(self._write_thread.shutdown)
        self._write_thread = None
        for conn in (self._loop_connection, self._write_connection, self._version_connection):
            if conn is not None:
                conn.close()
        self._loop_connection = self._write_connection = self._version_connection = None
        if self._turn is not None:
            self._turn.close()


class RowInsert:
    """`INSERT INTO table` of whole rows, for units of work (`UnitConnection`).

    Built once from the table: it writes every column but an autoincrement key, each value
    converted by the column's type (timestamps, booleans, JSON) as SQLAlchemy does; a column
    the caller leaves out gets its scalar default, else NULL. Columns whose default SQLAlchemy
    would compute (callables, server defaults) are refused when the table is described, so a
    schema change cannot silently write something else than the engines would.
    """

    def __init__(self, table: Table) -> None:
        self.table = table
        self._columns: list[tuple[str, Any, ColumnWriter]] = []
        for column in table.columns:
            if column is table.autoincrement_column:
                continue
            default = column.default
            if column.server_default is not None or (
                default is not None and not getattr(default, "is_scalar", False)
            ):
                raise ValueError(f"RowInsert cannot fill {table.name}.{column.name}'s default")
            value = getattr(default, "arg", None) if default is not None else None
            self._columns.append((column.name, value, ColumnWriter(column)))
        self._names = {name for name, _, _ in self._columns}
        #: Per dialect: each column's name, default and conversion (None: the value as it is).
        self._writers: dict[str, list[tuple[str, Any, Callable[[Any], Any] | None]]] = {}
        names = ", ".join(name for name, _, _ in self._columns)
        marks = ", ".join("?" for _ in self._columns)
        self.sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"  # noqa: S608
        key = table.autoincrement_column
        # The new row's key by RETURNING, which both engines have (DB-API's lastrowid is
        # SQLite's own).
        self._returning = f"{self.sql} RETURNING {key.name}" if key is not None else None

    def _row(self, conn: UnitConnection, values: Mapping[str, Any]) -> tuple[Any, ...]:
        if not self._names.issuperset(values):
            unknown = values.keys() - self._names
            raise KeyError(f"{self.table.name} has no column {sorted(unknown)}")
        writers = self._writers.get(conn.dialect.name) or self._writers_for(conn.dialect)
        # What ColumnWriter does, with each column's conversion looked up once per dialect
        # (a message's rows are built on every send): None stays None.
        row = [values.get(name, default) for name, default, _ in writers]
        for at, (_, _, convert) in enumerate(writers):
            if convert is not None and row[at] is not None:
                row[at] = convert(row[at])
        return tuple(row)

    def _writers_for(self, dialect: Dialect) -> list[tuple[str, Any, Callable[[Any], Any] | None]]:
        found = self._writers[dialect.name] = [
            (name, default, write.remembered(dialect)) for name, default, write in self._columns
        ]
        return found

    async def one(self, conn: UnitConnection, values: Mapping[str, Any]) -> int:
        """Insert one row; its autoincrement key (`many` inserts into a table without one)."""
        if self._returning is None:
            raise TypeError(f"{self.table.name} has no autoincrement key: insert with many()")
        return int((await conn.execute(self._returning, self._row(conn, values))).fetchone()[0])

    async def many(self, conn: UnitConnection, rows: Iterable[Mapping[str, Any]]) -> None:
        await conn.executemany(self.sql, [self._row(conn, values) for values in rows])

    async def one_with(
        self, conn: UnitConnection, values: Mapping[str, Any], details: Sequence[Details]
    ) -> int:
        """Insert one row and rows of other tables that refer to it (`details`); its key.

        On PostgreSQL this is one statement, a data-modifying WITH, so it costs one
        statement's round trip and the driver's work for one; on SQLite, whose statements
        cost microseconds on the loop, the row and then each table's rows (`one`, `many`)."""
        pk, _ = await self.one_with_scalars(conn, values, details, ())
        return pk

    async def one_with_scalars(
        self,
        conn: UnitConnection,
        values: Mapping[str, Any],
        details: Sequence[Details],
        scalars: Sequence[Scalar],
    ) -> tuple[int, list[Any]]:
        """`one_with`, and the value of each of `scalars` (queries of one value, which must
        not read the tables written): on PostgreSQL in the same statement, so without a
        round trip of their own; on SQLite as one statement after the inserts. (key, the
        values in the order of `scalars`)"""
        if conn.dialect.name != "postgresql":
            pk = await self.one(conn, values)
            for detail in details:
                await detail.insert.many(conn, detail.rows_of(pk))
            if not scalars:
                return pk, []
            sql = "SELECT " + ", ".join(f"({scalar.sql})" for scalar in scalars)
            params = [param for scalar in scalars for param in scalar.params]
            return pk, list((await conn.execute(sql, params)).fetchone())
        sql = self._with_details(
            conn.dialect,
            tuple((d.insert, d.key, len(d.rows)) for d in details),
            tuple(scalar.sql for scalar in scalars),
        )
        params = list(self._row(conn, values))
        for detail in details:
            at = detail.insert.position(detail.key)
            for row in detail.rows:
                given = detail.insert._row(conn, row)
                params.extend(given[:at] + given[at + 1 :])
        for scalar in scalars:
            params.extend(scalar.params)
        row = (await conn.execute(sql, params)).fetchone()
        return int(row[0]), list(row[1:])

    def position(self, name: str) -> int:
        """Where column `name` is among the values of a row (`_row`)."""
        for at, (column, _, _) in enumerate(self._columns):
            if column == name:
                return at
        raise KeyError(f"{self.table.name} has no column {name!r} to insert")

    @functools.lru_cache(maxsize=256)  # noqa: B019 (a few RowInserts, made once, kept)
    def _with_details(
        self,
        dialect: Dialect,
        details: tuple[tuple[RowInsert, str, int], ...],
        scalars: tuple[str, ...] = (),
    ) -> str:
        """PostgreSQL's statement for `one_with`: the row's INSERT ... RETURNING, then an
        INSERT ... SELECT for each table of details, the new key from the first, the rest
        from VALUES, each value cast to its column's type (VALUES would not know it); the
        key is selected with the value of each of `scalars`."""
        key = self.table.autoincrement_column
        if self._returning is None or key is None:
            raise TypeError(f"{self.table.name} has no autoincrement key")
        parts = [f"WITH parent AS ({self._returning})"]
        for index, (insert, column, count) in enumerate(details):
            if count == 0:
                continue
            at = insert.position(column)
            names = [name for name, _, _ in insert._columns]
            # The type without its length: a cast to VARCHAR(16) would cut a longer value
            # short without a word, where the column refuses it (as a plain INSERT does).
            kinds = [
                re.sub(r"\(\d+\)$", "", insert.table.c[name].type.compile(dialect=dialect))
                for name in names
            ]
            row = ", ".join(f"CAST(? AS {kind})" for i, kind in enumerate(kinds) if i != at)
            chosen = ", ".join(
                f"parent.{key.name}" if i == at else f"v.c{i}" for i in range(len(names))
            )
            labels = ", ".join(f"c{i}" for i in range(len(names)) if i != at)
            parts.append(
                f", d{index} AS (INSERT INTO {insert.table.name} ({', '.join(names)}) "  # noqa: S608
                f"SELECT {chosen} FROM parent, (VALUES {', '.join([f'({row})'] * count)}) "
                f"AS v({labels}))"
            )
        also = "".join(f", ({scalar})" for scalar in scalars)
        parts.append(f" SELECT {key.name}{also} FROM parent")  # noqa: S608
        return "".join(parts)


@dataclass(frozen=True)
class Scalar:
    """A query of one value evaluated with an insert (`RowInsert.one_with_scalars`): its
    SQL, with `?` placeholders, and their values."""

    sql: str
    params: Sequence[Any]


@dataclass(frozen=True)
class Details:
    """Rows of a table that refer to a row inserted with them (`RowInsert.one_with`): each
    row's values but `key`, the column that takes the new row's key."""

    insert: RowInsert
    key: str
    rows: Sequence[Mapping[str, Any]]

    def rows_of(self, pk: int) -> list[dict[str, Any]]:
        return [{self.key: pk, **row} for row in self.rows]


class ColumnReader:
    """Turns what a unit connection's driver returns for a column into what SQLAlchemy
    would (e.g. a UTC datetime), for the connection's dialect: `read(conn, value)`."""

    def __init__(self, column: Column[Any]) -> None:
        self._type = column.type
        self._by_dialect: dict[str, Callable[[Any], Any]] = {}

    def __call__(self, conn: UnitConnection, value: Any) -> Any:
        return self.of(conn.dialect)(value)

    def of(self, dialect: Dialect) -> Callable[[Any], Any]:
        """The conversion for `dialect` (`unchanged` when its driver's value is already
        SQLAlchemy's)."""
        process = self._by_dialect.get(dialect.name)
        if process is None:
            found = self._type.dialect_impl(dialect).result_processor(dialect, None)
            process = self._by_dialect[dialect.name] = found or unchanged
        return process


class ColumnWriter:
    """Turns a value for a column into what SQLAlchemy's engines would bind for it on the
    connection's dialect (e.g. a UTC datetime into SQLite's text form): `write(conn, value)`;
    None stays None."""

    def __init__(self, column: Column[Any]) -> None:
        self._type = column.type
        self._by_dialect: dict[str, Callable[[Any], Any]] = {}
        self._remembering: dict[str, Callable[[Any], Any]] = {}

    def __call__(self, conn: UnitConnection, value: Any) -> Any:
        if value is None:
            return None
        process = self._remembering.get(conn.dialect.name)
        if process is None:  # (the rows a unit writes at once mostly share one `now`)
            process = self.remembered(conn.dialect) or unchanged
            self._remembering[conn.dialect.name] = process
        return process(value)

    def of(self, dialect: Dialect) -> Callable[[Any], Any]:
        """The conversion for `dialect` (`unchanged` when the driver takes the value as it
        is); unlike `__call__`, it is also given None."""
        process = self._by_dialect.get(dialect.name)
        if process is None:
            found = self._type.dialect_impl(dialect).bind_processor(dialect)
            process = self._by_dialect[dialect.name] = found or unchanged
        return process

    def remembered(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """`of(dialect)` for a caller that passes None by itself, or None when there is no
        conversion. A timestamp's conversion remembers its last results: a new row's times
        are mostly one `now` (a message's creation, update and first history entry), and
        SQLite's text form costs several microseconds to build each time. (Equal aware
        datetimes are the same instant, whose UTC form is the same text.)"""
        process = self.of(dialect)
        if process is unchanged:
            return None
        try:
            timestamp = issubclass(self._type.python_type, datetime)
        except NotImplementedError:  # a type that does not say
            timestamp = False
        return functools.lru_cache(maxsize=64)(process) if timestamp else process


def unchanged(value: Any) -> Any:
    """The conversion of a type that has none on a dialect (`ColumnReader.of`)."""
    return value


def upsert(conn: AsyncConnection, table: Table) -> Any:
    """`INSERT INTO table` of the connection's engine, which can end in
    `.on_conflict_do_update(...)` (SQLite's and PostgreSQL's have the same form)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def is_integrity_error(exc: BaseException) -> bool:
    """Whether `exc` is a broken constraint (a duplicate key, say), on either engine."""
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    psycopg = sys.modules.get("psycopg")  # loaded only where PostgreSQL is used
    return psycopg is not None and isinstance(exc, psycopg.IntegrityError)


def is_nul_refused(exc: BaseException) -> bool:
    """Whether `exc` is PostgreSQL's driver refusing a text that holds U+0000 (its text type
    cannot hold it; SQLite stores it): bad input, not a fault. Also when SQLAlchemy wraps it
    (`orig`) or another error was raised from it."""
    psycopg = sys.modules.get("psycopg")  # loaded only where PostgreSQL is used
    if psycopg is None:
        return False
    seen: BaseException | None = exc
    for _ in range(4):  # the error itself, and what it wraps
        if seen is None:
            return False
        if isinstance(seen, psycopg.DataError) and "cannot contain NUL (0x00)" in str(seen):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def row_lock(conn: UnitConnection, skip_locked: bool = False) -> str:
    """The clause that ends a SELECT whose rows the transaction goes on to change, so that
    another node's transaction cannot change them meanwhile: PostgreSQL's `FOR UPDATE`
    (`SKIP LOCKED`: pass over rows another transaction holds, for a queue). Nothing on
    SQLite, where a write transaction (`BEGIN IMMEDIATE`) already keeps every other out."""
    if conn.dialect.name == "sqlite":
        return ""
    return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"


#: Rows a retention batch deletes in one transaction (`delete_in_batches`).
DELETE_BATCH = 500


async def delete_in_batches(
    db: Database,
    any_left: Callable[[AsyncConnection], Awaitable[bool]],
    delete_some: Callable[[AsyncConnection, int], Awaitable[int]],
    batch: int = DELETE_BATCH,
) -> int:
    """Delete old rows a batch at a time, each in a `write()` of its own, so that the write
    lock is never held long and the API's writes get their turns in between; look first
    with a read (`any_left`), as a write would hold the API up for nothing. How many went."""
    async with db.read() as conn:
        if not await any_left(conn):
            return 0
    total = 0
    while True:
        async with db.write() as conn:
            gone = await delete_some(conn, batch)
        total += gone
        if gone < batch:
            return total
        await asyncio.sleep(0)


async def delete_older(
    db: Database,
    column: Column[Any],
    before: datetime,
    *also: ColumnElement[bool],
    batch: int = DELETE_BATCH,
) -> int:
    """Delete the rows of `column`'s table whose `column` is before `before` (and that meet
    `also`), by `delete_in_batches` (the table's key chooses each batch); how many went."""
    table = column.table
    (key,) = table.primary_key.columns
    old = and_(column < before, *also)

    async def any_left(conn: AsyncConnection) -> bool:
        return (await conn.execute(select(key).where(old).limit(1))).first() is not None

    async def delete_some(conn: AsyncConnection, size: int) -> int:
        chosen = select(key).where(old).limit(size).scalar_subquery()
        return int((await conn.execute(delete(table).where(key.in_(chosen)))).rowcount or 0)

    return await delete_in_batches(db, any_left, delete_some, batch)


def among(conn: UnitConnection, column: str, subquery: str) -> str:
    """`column` among the keys `subquery` chooses, the subquery run exactly once. On
    PostgreSQL `IN (subquery)` may be planned as a join that runs a subquery again, and a
    choice with `LIMIT` and `SKIP LOCKED` can choose other rows the second time (so more
    than the limit); `= ANY(ARRAY(subquery))` is an InitPlan, run once before the
    statement. On SQLite, whose transaction keeps every other writer out, `IN`."""
    if conn.dialect.name == "sqlite":
        return f"{column} IN ({subquery})"
    return f"{column} = ANY(ARRAY({subquery}))"


def marks(count: int) -> str:
    """`?, ?, ?`: the placeholders of an `IN (...)` list of `count` values."""
    return ", ".join("?" * count)


def ensure_sqlite_directory(url: str) -> None:
    """Create the directory holding a SQLite file, so a first start needs no setup."""
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


async def _run_apart(conn: sqlite3.Connection, works: list[Unit[Any]]) -> list[_Outcome]:
    """Every unit in its own SAVEPOINT of the open transaction: one that raises is undone."""
    outcomes: list[_Outcome] = []
    unit = SQLiteUnit(conn)
    for work in works:
        conn.execute("SAVEPOINT unit")
        try:
            value = await work(unit)
        except Exception as exc:
            conn.execute("ROLLBACK TO unit")
            conn.execute("RELEASE unit")
            outcomes.append((False, exc))
        else:
            conn.execute("RELEASE unit")
            outcomes.append((True, value))
    return outcomes


@contextmanager
def _patient(conn: sqlite3.Connection) -> Iterator[None]:
    """The group-commit connection waits for the lock as long as any connection does
    (BUSY_TIMEOUT_MS) for the block, its busy timeout 0 again after: for the rare statement
    that runs on the write thread, or must not fail (a failed batch's second BEGIN)."""
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    try:
        yield
    finally:
        conn.execute("PRAGMA busy_timeout=0")


async def _freelist_count(conn: UnitConnection) -> int:
    return int((await conn.execute("PRAGMA freelist_count")).fetchone()[0])


async def _in_read_transaction(conn: sqlite3.Connection, work: Unit[T]) -> T:
    conn.execute("BEGIN")
    try:
        return await work(SQLiteUnit(conn))
    finally:
        conn.execute("ROLLBACK")


async def _to_the_end(work: asyncio.Future[T]) -> T:
    """`work` (a COMMIT, a vacuum step: on the write thread, with the write connection)
    awaited; if the awaiting is cancelled, still to its end, so that the write turns are
    not given back, nor the connection used again, while it runs."""
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        raise


class _LockWaits:
    """The pauses between tries at a lock another connection holds (LOOP_LOCK_*); past
    BUSY_TIMEOUT_MS from `since` (now by default), SQLite's own "database is locked" is
    raised."""

    def __init__(self, since: float | None = None) -> None:
        self._started = time.monotonic() if since is None else since
        self._pause = LOOP_LOCK_RETRY_SECONDS

    async def next(self) -> None:
        waited = time.monotonic() - self._started
        if waited > BUSY_TIMEOUT_MS / 1000:
            raise sqlite3.OperationalError("database is locked")
        if waited > LOOP_LOCK_PATIENCE_SECONDS:
            self._pause = min(self._pause * 2, LOOP_LOCK_MAX_SECONDS)
        await asyncio.sleep(self._pause)


def _ping(path: str) -> None:
    uri = Path(path).resolve().as_uri() + "?mode=rw"
    conn = sqlite3.connect(uri, uri=True, timeout=PING_TIMEOUT_SECONDS)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        conn.close()


def _busy(exc: sqlite3.OperationalError) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_BUSY


def _set_pragmas(
    dbapi_connection: Any, synchronous: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")  # first: the others may wait
    # Before WAL mode writes the header of a new file (db/space.py).
    space.incremental_if_new(dbapi_connection)
    for pragma in (
        "journal_mode=WAL",
        f"synchronous={synchronous}",
        "foreign_keys=ON",
        # Statement journals (the undo of one statement inside a transaction: a multi-row
        # UPDATE, a statement that fires a trigger) in memory: on disk, one over 64 KiB
        # went to a temp file, created, written page by page and deleted; a link's process
        # wrote 12,000 pages a second to them (docs/performance.md). Temp tables and
        # indexes a query builds are held in memory too (a large sort still goes to a
        # file once it outgrows the page cache).
        "temp_store=MEMORY",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_engine(url: str, synchronous: str, *, immediate: bool, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(
        url,
        poolclass=AsyncAdaptedQueuePool,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=30,
        hide_parameters=True,  # no message text in an error (docs/operations.md)
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver, so BEGIN is ours to write.
        dbapi_connection.isolation_level = None
        _set_pragmas(dbapi_connection, synchronous)

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine
