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
- `read_sync(work)` / `write_sync(work)` run a synchronous `work(connection)` on a database
  thread with a plain `sqlite3` connection: one thread hop for the whole unit of work and
  DB-API statements (build them with `RowInsert` and `column_reader`, which apply the
  column types as SQLAlchemy would). They are for the hot paths (queueing a message).
  `write_sync` does group commit: the units submitted while a commit is in progress run
  together in the next transaction, under one COMMIT, so one WAL sync serves many requests;
  a unit that raises is rolled back alone and gets its exception (the batch is then run
  again with a SAVEPOINT around each unit, so a unit may run twice: it must do nothing but
  use its connection). It returns only after that COMMIT: durability is that of one
  transaction per unit. The units of a batch run on the event loop (so they must be a few
  indexed statements, like storing a message) and only the COMMIT, the WAL sync, goes to
  the write thread (a batch that changed no row commits on the loop: nothing to sync).
  When another process holds the write lock (several server processes take turns), the
  loop tries again every `LOOP_LOCK_RETRY_SECONDS`, serving requests meanwhile, and after
  `LOOP_LOCK_PATIENCE_SECONDS` the whole batch waits on the write thread instead.
- `read_now(work)` runs `work(connection)` right on the event loop, for a lookup by key that
  takes microseconds (the credential check every API request makes): a thread hop costs
  more than such a query. WAL readers do not wait for writers; in the rare case one would
  (SQLITE_BUSY: recovery after a crash), it gives up after `LOOP_BUSY_TIMEOUT_MS` and the
  work is run on a database thread instead, so the loop is never held for long.

Both writers take the same turn (`_write_turn`), so within a process there is still one
write transaction at a time. Do not call `write_sync` inside a `write()` block: it would wait
for the turn that block holds. And since a `write()` block holds the turn across every
statement's trip through a busy event loop (tens to hundreds of milliseconds under load,
while every queued message waits for its commit), periodic work looks first with `read()`
and takes the turn only when there is something to change.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import Column, Table, event
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from smsgw.config import POSTGRES_NOT_YET, Settings

T = TypeVar("T")

READ_THREADS = 4
#: How long a connection waits for a lock held by another one (another process, mostly).
BUSY_TIMEOUT_MS = 10_000
#: How long `read_now` may hold the event loop waiting on a lock before moving to a thread.
LOOP_BUSY_TIMEOUT_MS = 20
#: When another process holds the write lock, how often the loop tries again to take it, and
#: for how long before the batch waits for it on the write thread instead.
LOOP_LOCK_RETRY_SECONDS = 0.0005
LOOP_LOCK_PATIENCE_SECONDS = 0.05
#: Most units of work one group-commit transaction takes; the rest wait for the next one.
MAX_BATCH = 256
#: The dialect whose type processing `RowInsert` and `column_reader` apply (as the engines do).
_DIALECT = SQLiteDialect_pysqlite()


class DatabaseUnsupported(Exception):
    """The configured database cannot be used by this version of smsgw."""


@dataclass
class _Job(Generic[T]):
    work: Callable[[sqlite3.Connection], T]
    future: asyncio.Future[T]


#: Outcome of one unit of work in a batch: (True, its value) or (False, what it raised).
_Outcome = tuple[bool, Any]


class Database:
    """Owns the engines. `read()` and `write()` give connections inside a transaction."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.resolved_database_url
        if settings.database_scheme != "sqlite":
            raise DatabaseUnsupported(POSTGRES_NOT_YET)
        ensure_sqlite_directory(self.url)
        self.synchronous = settings.sqlite_synchronous.value
        self.reader = _sqlite_engine(self.url, self.synchronous, immediate=False, pool_size=4)
        self.writer = _sqlite_engine(self.url, self.synchronous, immediate=True, pool_size=1)
        self.path = make_url(self.url).database or ""
        # Threads and connections of read_sync/write_sync: made on first use, so a Database
        # built only to check the settings starts nothing.
        self._read_threads: ThreadPoolExecutor | None = None
        self._write_thread: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._loop_connection: sqlite3.Connection | None = None
        self._write_connection: sqlite3.Connection | None = None
        self._raw_connections: list[sqlite3.Connection] = []
        self._raw_lock = threading.Lock()
        self._write_turn_lock: asyncio.Lock | None = None
        self._queue: list[_Job[Any]] = []
        self._flusher: asyncio.Task[None] | None = None

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
        """A connection in a write transaction, committed when the block exits cleanly."""
        async with self._write_turn, self.writer.begin() as conn:
            yield conn

    async def read_now(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` in one read transaction on the calling (event loop) thread.

        Only for work that takes microseconds (a lookup by an indexed key); if the database
        is busy, the work is retried with `read_sync`.
        """
        try:
            if self._loop_connection is None:
                self._loop_connection = self._connect(busy_timeout_ms=LOOP_BUSY_TIMEOUT_MS)
            return _in_read_transaction(self._loop_connection, work)
        except sqlite3.OperationalError as exc:
            if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF != sqlite3.SQLITE_BUSY:
                raise
        return await self.read_sync(work)

    async def read_sync(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` in one read transaction on a database thread; its result."""
        if self._read_threads is None:
            self._read_threads = ThreadPoolExecutor(READ_THREADS, "smsgw-db-read")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_threads, self._run_read, work)

    def _run_read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return _in_read_transaction(self._thread_connection(), work)

    async def write_sync(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(connection)` in a write transaction; its result once committed.

        If `work` raises, none of its changes are kept and its exception is raised here; the
        other units committed with it are not affected. If the COMMIT fails, every unit of
        that transaction gets the error.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(work, future)
        self._queue.append(job)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        """Commit queued units, batch after batch, while any are waiting."""
        loop = asyncio.get_running_loop()
        if self._write_thread is None:
            self._write_thread = ThreadPoolExecutor(1, "smsgw-db-write")
        try:
            while self._queue:
                async with self._write_turn:
                    # Take the batch only now: what queued while waiting for the turn joins it.
                    batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                    batch = [job for job in batch if not job.future.done()]  # caller gone
                    if not batch:
                        continue
                    works = [job.work for job in batch]
                    try:
                        ran = self._run_batch_now(works)
                        give_up = time.monotonic() + LOOP_LOCK_PATIENCE_SECONDS
                        while (
                            ran is None
                            and self._write_connection is not None
                            and time.monotonic() < give_up
                        ):
                            # Another process holds the lock for its COMMIT (several server
                            # processes): try again in a moment, the loop serving meanwhile.
                            await asyncio.sleep(LOOP_LOCK_RETRY_SECONDS)
                            ran = self._run_batch_now(works)
                        if ran is None:  # still locked (a long write): wait apart
                            outcomes = await loop.run_in_executor(
                                self._write_thread, self._run_batch, works
                            )
                        else:
                            outcomes, wrote = ran
                            if wrote:
                                await loop.run_in_executor(self._write_thread, self._commit)
                            else:  # nothing written (pulls that found nothing, repeated
                                self._commit()  # reports): no WAL sync, so no thread hop
                    except Exception as exc:  # the COMMIT failed: nothing of the batch is kept
                        outcomes = [(False, exc)] * len(batch)
                    except BaseException:  # cancelled: its callers must not wait forever
                        for job in batch:
                            job.future.cancel()
                        raise
                for job, (ok, value) in zip(batch, outcomes, strict=True):
                    if job.future.done():
                        continue
                    if ok:
                        job.future.set_result(value)
                    else:
                        job.future.set_exception(value)
        finally:
            self._flusher = None

    def _run_batch_now(
        self, works: list[Callable[[sqlite3.Connection], Any]]
    ) -> tuple[list[_Outcome], bool] | None:
        """On the event loop: BEGIN and the batch's units, leaving the COMMIT to the caller:
        the outcomes, and whether the transaction wrote anything (its COMMIT is then a WAL
        sync, for the write thread). None, with nothing done, when another process holds the
        lock (or before the first batch).

        Why on the loop: the units are a few indexed statements each, but every statement
        releases the GIL around SQLite and must win it back from the busy event loop. On
        the write thread that made a unit take about a millisecond of waiting for 0.2 ms of
        work, and the group-commit pipeline, not the loop, set the API's throughput.
        """
        conn = self._write_connection
        if conn is None:  # the first batch connects on the write thread (PRAGMAs may wait)
            return None
        conn.execute("PRAGMA busy_timeout=0")  # never sleep on the loop: _flush retries
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            return None
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        changes = conn.total_changes
        outcomes = self._run_units(conn, works)
        # A statement that failed half-way changed no row but may have left pages written.
        failed = not all(ok for ok, _ in outcomes)
        return outcomes, failed or conn.total_changes != changes

    def _run_batch(self, works: list[Callable[[sqlite3.Connection], Any]]) -> list[_Outcome]:
        """On the write thread: the batch in one transaction, under one COMMIT (when
        `_run_batch_now` found the database locked by another process)."""
        conn = self._writer_connection()
        conn.execute("BEGIN IMMEDIATE")
        outcomes = self._run_units(conn, works)
        self._commit()
        return outcomes

    def _run_units(
        self, conn: sqlite3.Connection, works: list[Callable[[sqlite3.Connection], Any]]
    ) -> list[_Outcome]:
        """The units in the open transaction, which is left open (for `_commit`) unless
        the only unit failed.

        The units first run one after the other in a plain transaction. If one raises, that
        transaction is rolled back and the batch runs again with each unit inside its own
        SAVEPOINT, so that only the failing units lose their changes. (SAVEPOINTs would cost
        a third of the time of storing a message, and failing units are the exception.)
        """
        try:
            try:
                return [(True, work(conn)) for work in works]
            except Exception as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if len(works) == 1:
                    return [(False, exc)]
                conn.execute("BEGIN IMMEDIATE")
                return _run_apart(conn, works)
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
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _writer_connection(self) -> sqlite3.Connection:
        """The one connection of group commit, used by the loop and the write thread in
        turn (never at once: `_flush` runs one batch at a time)."""
        if self._write_connection is None:
            self._write_connection = self._connect(busy_timeout_ms=BUSY_TIMEOUT_MS)
        return self._write_connection

    def _thread_connection(self) -> sqlite3.Connection:
        """This database thread's own sqlite3 connection, set up like the engines' ones."""
        conn: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if conn is None:
            conn = self._connect(busy_timeout_ms=BUSY_TIMEOUT_MS)
            self._local.connection = conn
        return conn

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
        with self._raw_lock:
            self._raw_connections.append(conn)
        return conn

    async def dispose(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.reader.dispose()
        await self.writer.dispose()
        for threads in (self._read_threads, self._write_thread):
            if threads is not None:
                await asyncio.to_thread(threads.shutdown)
        self._read_threads = self._write_thread = None
        with self._raw_lock:
            connections, self._raw_connections = self._raw_connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()
        self._loop_connection = self._write_connection = None


class RowInsert:
    """`INSERT INTO table` of whole rows, for the sqlite3 connections of `*_sync` work.

    Built once from the table: it writes every column but an autoincrement key, each value
    converted by the column's type (timestamps, booleans, JSON) as SQLAlchemy does; a column
    the caller leaves out gets its scalar default, else NULL. Columns whose default SQLAlchemy
    would compute (callables, server defaults) are refused when the table is described, so a
    schema change cannot silently write something else than the engines would.
    """

    def __init__(self, table: Table) -> None:
        self.table = table
        self._columns: list[tuple[str, Any, Callable[[Any], Any] | None]] = []
        for column in table.columns:
            if column is table.autoincrement_column:
                continue
            default = column.default
            if column.server_default is not None or (
                default is not None and not getattr(default, "is_scalar", False)
            ):
                raise ValueError(f"RowInsert cannot fill {table.name}.{column.name}'s default")
            value = getattr(default, "arg", None) if default is not None else None
            process = column.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
            self._columns.append((column.name, value, process))
        self._names = {name for name, _, _ in self._columns}
        names = ", ".join(name for name, _, _ in self._columns)
        marks = ", ".join("?" for _ in self._columns)
        self.sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"  # noqa: S608

    def _row(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        unknown = values.keys() - self._names
        if unknown:
            raise KeyError(f"{self.table.name} has no column {sorted(unknown)}")
        row = []
        for name, default, process in self._columns:
            value = values.get(name, default)
            row.append(process(value) if process is not None and value is not None else value)
        return tuple(row)

    def one(self, conn: sqlite3.Connection, values: Mapping[str, Any]) -> int:
        """Insert one row; its rowid (the autoincrement key, if the table has one)."""
        rowid = conn.execute(self.sql, self._row(values)).lastrowid
        assert rowid is not None
        return rowid

    def many(self, conn: sqlite3.Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        conn.executemany(self.sql, [self._row(values) for values in rows])


def column_reader(column: Column[Any]) -> Callable[[Any], Any]:
    """Turns what sqlite3 returns for `column` into what SQLAlchemy would (e.g. UTC datetime)."""
    process = column.type.dialect_impl(_DIALECT).result_processor(_DIALECT, None)
    if process is None:
        return lambda value: value
    return process


def column_writer(column: Column[Any]) -> Callable[[Any], Any]:
    """Turns a value for `column` into what the engines would bind for it (e.g. a UTC
    datetime into SQLite's text form), for parameters of `*_sync` statements; None stays."""
    process = column.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
    if process is None:
        return lambda value: value
    convert = process
    return lambda value: None if value is None else convert(value)


def marks(count: int) -> str:
    """`?, ?, ?`: the placeholders of an `IN (...)` list of `count` values."""
    return ", ".join("?" * count)


def ensure_sqlite_directory(url: str) -> None:
    """Create the directory holding a SQLite file, so a first start needs no setup."""
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _run_apart(
    conn: sqlite3.Connection, works: list[Callable[[sqlite3.Connection], Any]]
) -> list[_Outcome]:
    """Every unit in its own SAVEPOINT of the open transaction: one that raises is undone."""
    outcomes: list[_Outcome] = []
    for work in works:
        conn.execute("SAVEPOINT unit")
        try:
            value = work(conn)
        except Exception as exc:
            conn.execute("ROLLBACK TO unit")
            conn.execute("RELEASE unit")
            outcomes.append((False, exc))
        else:
            conn.execute("RELEASE unit")
            outcomes.append((True, value))
    return outcomes


def _in_read_transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN")
    try:
        return work(conn)
    finally:
        conn.execute("ROLLBACK")


def _set_pragmas(
    dbapi_connection: Any, synchronous: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in (
        f"busy_timeout={busy_timeout_ms}",  # first: the others may have to wait for a lock
        "journal_mode=WAL",
        f"synchronous={synchronous}",
        "foreign_keys=ON",
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
