"""PostgreSQL specifics (issue 16, under way): whether a server can be used, its schema
revision, the lock that keeps nodes from migrating at once, and `PostgresDatabase` with its
units of work (`PostgresUnit`). psycopg is imported only here and in SQLAlchemy's dialect,
when a PostgreSQL URL is used."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import zlib
from collections.abc import AsyncIterator, Collection, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from smsgw.config import Settings
from smsgw.db.engine import (
    Database,
    Interleaved,
    Job,
    Rows,
    Unit,
    UnitConnection,
    placeholders,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import AsyncConnectionPool
    from sqlalchemy import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection

T = TypeVar("T")
log = logging.getLogger("smsgw.db")

#: PostgreSQL's dialect through psycopg, whose type processing units apply (db/engine.py).
POSTGRESQL = PGDialect_psycopg()  # type: ignore[no-untyped-call]

#: The advisory lock every node takes around a migration (any constant both agree on).
MIGRATION_LOCK = 0x736D7367  # "smsg"
CONNECT_TIMEOUT_SECONDS = 5
#: The longest a unit of work waits for a pooled connection (PostgresDatabase._units_pool).
POOL_WAIT_SECONDS = 10


def connect_arguments(url: str) -> dict[str, Any]:
    """psycopg's connection arguments for a SQLAlchemy URL (any driver name)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    arguments: dict[str, Any] = parsed.translate_connect_args(username="user", database="dbname")
    arguments.update(parsed.query)
    arguments.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
    return arguments


def shown(url: str) -> str:
    """The URL to print: PostgreSQL's without its password."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)


def problem_with(url: str) -> str | None:
    """Why the server at `url` cannot be used, in one line (None when a session opens)."""
    try:
        import psycopg
    except ImportError:
        return (
            "PostgreSQL needs its driver, which is not installed: pip install 'smsgw[postgresql]'"
        )

    arguments = connect_arguments(url)
    where = f"{arguments.get('host') or 'localhost'}:{arguments.get('port') or 5432}"
    user, database = arguments.get("user"), arguments.get("dbname")
    try:
        with psycopg.connect(**arguments):
            return None
    except psycopg.OperationalError as exc:
        # libpq's connection errors carry no SQLSTATE: the server's words tell them apart.
        text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        if "password authentication failed" in text:
            return f"PostgreSQL at {where} refused user {user!r}: wrong password ({text})"
        if "database" in text and "does not exist" in text:
            return (
                f"the database {database!r} does not exist on PostgreSQL at {where}: create it "
                f"first (createdb {database})"
            )
        if "FATAL:" in text:  # the server answered, and refused
            return f"PostgreSQL at {where} refused the session: {text}"
        return f"cannot reach PostgreSQL at {where}: {text or type(exc).__name__}"


def current_revisions(url: str) -> set[str] | None:
    """The revisions the database is at: empty when it has no schema yet; None when it
    cannot be read (Alembic then decides, and reports the problem)."""
    import psycopg

    try:
        with psycopg.connect(**connect_arguments(url)) as conn:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
            return {row[0] for row in rows}
    except psycopg.errors.UndefinedTable:
        return set()
    except psycopg.Error:
        return None


def lock_for_migration(connection: Connection) -> None:
    """Hold the migration lock until the transaction ends: nodes starting together migrate
    one after the other (the later ones then find the schema current)."""
    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")


class PostgresUnit(UnitConnection):
    """A psycopg async connection as a unit of work's (db/engine.UnitConnection): the
    units' `?` placeholders become psycopg's `%s`, and each statement's rows are fetched
    before it returns, as SQLite's cursor holds them.

    In a `pipeline` (psycopg's pipeline mode), `executemany` only queues its rows: they
    leave with the next statement whose answer is awaited (an `execute`, or the COMMIT),
    in one round trip with it. Its errors then show there, in whatever unit awaits next:
    PostgresDatabase._run_batch runs the batch again apart, unit by unit, when anything
    fails."""

    __slots__ = ("_conn", "_pipeline")
    dialect = POSTGRESQL

    def __init__(
        self, conn: psycopg.AsyncConnection[Any], pipeline: psycopg.AsyncPipeline | None = None
    ) -> None:
        self._conn = conn
        self._pipeline = pipeline

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> Rows:
        cursor = await self._conn.execute(placeholders(sql), tuple(params))
        if self._pipeline is not None:
            await self._pipeline.sync()  # its answer (and those of what was queued before)
        return await _fetched(cursor)

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        # Not closed at once: in a pipeline, its answers arrive later.
        cursor = self._conn.cursor()
        await cursor.executemany(placeholders(sql), [tuple(row) for row in rows])


async def _fetched(cursor: psycopg.AsyncCursor[Any]) -> Fetched:
    """A statement's rows, its answer having arrived."""
    rows = await cursor.fetchall() if cursor.description is not None else []
    return Fetched(rows, cursor.rowcount)


class _RoundsEnded(Exception):
    """What an interleaved unit's statement gets once its batch has failed (_SideBySide)."""


class _SideBySide:
    """A batch's interleaved units (db/engine.Interleaved) run side by side in its pipeline,
    in rounds: once every unit still running awaits the answer to a statement, the round
    sends them all, syncs once and gives each unit its rows. N messages then take the round
    trips of one, where one after the other took N times as many, each waiting for a pass
    of the busy event loop. A unit's `executemany` rows are only queued, as PostgresUnit's.

    If a unit raises, or a statement fails, the statements waiting for a round are
    cancelled and any later one is refused (_RoundsEnded), so every unit ends soon, and
    none is cancelled inside psycopg (in `executemany`, which would send the server a
    cancel request); the error goes up, and the batch runs again apart, unit after unit
    (PostgresDatabase._run_batch_on)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], pipeline: psycopg.AsyncPipeline) -> None:
        self._conn, self._pipeline = conn, pipeline
        self._asked: list[tuple[str, tuple[Any, ...], asyncio.Future[Rows]]] = []
        self._running = 0
        self._failed = False
        self._round = asyncio.Event()

    async def run(self, works: list[Unit[Any]]) -> list[Any]:
        """Each unit's value, in the order of `works`."""
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._unit(work)) for work in works]
        self._running = len(tasks)
        for task in tasks:
            task.add_done_callback(self._ended)
        try:
            while self._running:
                await self._round.wait()
                self._round.clear()
                if self._failed:
                    break
                if self._asked and len(self._asked) >= self._running:
                    await self._answer()
        finally:
            self._failed = True  # ended: a statement asked from now on is refused
            for _, _, future in self._asked:
                future.cancel()
            self._asked = []
            await asyncio.gather(*tasks, return_exceptions=True)
        if any(task.cancelled() or task.exception() is not None for task in tasks):
            errors = [task.exception() for task in tasks if not task.cancelled()]
            raise next(
                (e for e in errors if e is not None and not isinstance(e, _RoundsEnded)),
                _RoundsEnded("a unit of the batch was cancelled"),
            )  # a unit's own error first
        return [task.result() for task in tasks]

    async def _unit(self, work: Unit[T]) -> T:
        return await work(_SideUnit(self))

    async def _answer(self) -> None:
        asked, self._asked = self._asked, []
        try:
            cursors = [await self._conn.execute(sql, params) for sql, params, _ in asked]
            await self._pipeline.sync()
            for (_, _, future), cursor in zip(asked, cursors, strict=True):
                future.set_result(await _fetched(cursor))
        finally:
            for _, _, future in asked:
                future.cancel()  # unanswered: the round failed (no-op for the answered)

    def _refuse_once_failed(self) -> None:
        if self._failed:
            raise _RoundsEnded("another unit of the batch failed")

    async def statement(self, sql: str, params: tuple[Any, ...]) -> Rows:
        self._refuse_once_failed()
        future: asyncio.Future[Rows] = asyncio.get_running_loop().create_future()
        self._asked.append((sql, params, future))
        if len(self._asked) >= self._running:
            self._round.set()
        return await future

    async def queue_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self._refuse_once_failed()
        # Not closed at once: in a pipeline, its answers arrive later.
        await self._conn.cursor().executemany(sql, rows)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._running -= 1
        if task.cancelled() or task.exception() is not None:
            self._failed = True
        if self._failed or len(self._asked) >= self._running:
            self._round.set()


class _SideUnit(UnitConnection):
    """An interleaved unit's connection: its statements go in their rounds (_SideBySide)."""

    __slots__ = ("_side",)
    dialect = POSTGRESQL

    def __init__(self, side: _SideBySide) -> None:
        self._side = side

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> Rows:
        return await self._side.statement(placeholders(sql), tuple(params))

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        await self._side.queue_many(placeholders(sql), [tuple(row) for row in rows])


async def _in_pipeline(
    conn: psycopg.AsyncConnection[Any], pipeline: psycopg.AsyncPipeline, works: list[Unit[Any]]
) -> list[tuple[bool, Any]]:
    """The batch's units in its pipeline, in order; interleaved ones that come together, side
    by side (_SideBySide)."""
    unit = PostgresUnit(conn, pipeline)
    done: list[tuple[bool, Any]] = []
    at = 0
    while at < len(works):
        end = at
        while end < len(works) and isinstance(works[end], Interleaved):
            end += 1
        if end - at > 1:
            values = await _SideBySide(conn, pipeline).run(works[at:end])
            done.extend((True, value) for value in values)
            at = end
        else:
            done.append((True, await works[at](unit)))
            at += 1
    return done


class Fetched:
    """A statement's rows, fetched (db/engine.Rows)."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


#: The advisory lock of serving: every serving node holds it shared, for as long as it serves
#: (any number of nodes at once); `smsgw db copy` holds it exclusive while it fills the
#: database, so that no node serves a half-copied one, and no copy runs under a node.
NODE_LOCK = 0x736D7369
#: Why a node does not start.
COPY_UNDER_WAY = (
    "`smsgw db copy` is filling this PostgreSQL database: start the nodes once it has ended"
)


def hold_node_lock(url: str, exclusive: bool = False) -> psycopg.Connection[Any] | None:
    """A connection holding the node lock (shared, as a serving node; `exclusive`, as a
    copy), to keep open for as long as it is needed: the server drops the lock with the
    connection, also when the process is killed. None when it cannot be had now."""
    import psycopg

    take = "pg_try_advisory_lock" if exclusive else "pg_try_advisory_lock_shared"
    # A host gone without a word (a failover) is noticed in about a minute, not TCP's 15.
    alive = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
             "keepalives_count": 3, "tcp_user_timeout": 60_000}  # fmt: skip
    conn = psycopg.connect(**connect_arguments(url) | alive, autocommit=True)
    row = conn.execute(f"SELECT {take}({NODE_LOCK})").fetchone()
    if row is None or not row[0]:
        conn.close()
        return None
    return conn


class StaleSession(Exception):
    """A pooled connection's session had ended before the work on it could be kept (see
    `PostgresDatabase._run_batch`)."""


class NodeLock:
    """The node lock held shared for as long as the node serves (`hold_node_lock`), and
    taken again when its session ends: a restart of PostgreSQL (or a failover, or an idle
    timeout) drops it with the session, and `smsgw db copy` could then fill the database
    under a serving node. A thread checks the session every `CHECK_SECONDS`; a node that
    cannot take the lock again (PostgreSQL still down, or a copy under way) says so in the
    log and tries again."""

    CHECK_SECONDS = 5.0

    def __init__(self, url: str, held: psycopg.Connection[Any]) -> None:
        self._url = url
        self._held = held
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="smsgw-node-lock", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._held.close()

    def __enter__(self) -> NodeLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _watch(self) -> None:
        import psycopg

        while not self._stop.wait(self.CHECK_SECONDS):
            try:
                self._held.execute("SELECT 1")
                continue
            except psycopg.Error:
                self._held.close()
            said = False
            while not self._stop.is_set():
                try:
                    held = hold_node_lock(self._url)
                except psycopg.Error as exc:
                    held, why = None, f"PostgreSQL cannot be reached ({type(exc).__name__})"
                else:
                    why = "`smsgw db copy` is filling this database"
                if held is not None:
                    self._held = held
                    log.warning("node lock: its session had ended; taken again")
                    break
                if not said:
                    log.error("node lock: its session ended and it cannot be taken again: %s; "
                              "trying every %.0f s", why, self.CHECK_SECONDS)  # fmt: skip
                    said = True
                self._stop.wait(self.CHECK_SECONDS)


#: The advisory lock between `write()` blocks (exclusive: one at a time in the whole
#: cluster, as SQLite has one writer) and group-commit batches (shared: batches run side by
#: side, their conflicts settled by row locks, `row_lock`, and the named locks below).
WRITE_LOCK = 0x736D7368
#: The class of the locks a batch takes on the names its units give (`write_unit`'s
#: `locks`): advisory locks of two int4 keys, a key space apart from the locks above.
NAMED_LOCKS = 0x736D736A
#: Those locks, taken in the order of the array's keys (unnest gives them in that order); one
#: row back, whatever their number.
TAKE_NAMED_LOCKS = (
    f"SELECT count(pg_advisory_xact_lock({NAMED_LOCKS}, key))"  # noqa: S608
    " FROM unnest(%s::int4[]) AS key"
)


async def _take_batch_locks(conn: psycopg.AsyncConnection[Any], keys: list[int]) -> None:
    """What a batch's transaction locks first: the write lock, shared, then the named locks
    of `keys` (named_lock_keys), in their order."""
    await conn.execute(f"SELECT pg_advisory_xact_lock_shared({WRITE_LOCK})")
    if keys:
        await conn.execute(TAKE_NAMED_LOCKS, (keys,))


def named_lock_keys(names: Collection[str]) -> list[int]:
    """The keys of the locks on `names`: one int4 each (the same on every node; two names
    may share one, which only makes their units take turns), sorted, so that every batch
    takes its locks in one order and none waits for a batch that waits for it."""
    return sorted({zlib.crc32(name.encode()) - 2**31 for name in names})


#: How many times at most a unit runs on its own after its batch failed (the first time in a
#: SAVEPOINT of the batch's rerun; again, each in a transaction of its own, only while it
#: meets a deadlock or a serialization failure).
UNIT_RUNS = 4


def _bad_luck(error: object) -> bool:
    """Whether a transaction failed on a deadlock or a serialization failure: the
    transaction's bad luck, not its units' doing, so they run again."""
    import psycopg

    return isinstance(error, (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure))


async def _unit_by_unit(
    conn: psycopg.AsyncConnection[Any], works: list[Unit[Any]], keys: list[int]
) -> list[tuple[bool, Any]]:
    """A failed batch run again without the pipeline, each unit in its own SAVEPOINT, so
    only the failing units lose their changes. A unit that meets a deadlock (or a
    serialization failure) there runs again after the others are committed, in a new
    transaction, up to UNIT_RUNS times in all: on a busy machine the batch that won the
    first deadlock can take a row again before the loser's rerun gets it (a newcomer may
    lock a row whose locker aborted before the waiter on it is scheduled), and the two meet
    once more. Its error is its outcome after that; and when such a later run fails as a
    whole, its error is the outcome of the units it ran, not of those committed before.

    A connection lost within a run is StaleSession (psycopg leaves the transaction block
    without a word then, and without its COMMIT): in the first run, the whole batch runs
    again on another connection (`_run_batch`), as nothing of it was kept."""
    unit = PostgresUnit(conn)
    outcomes: list[tuple[bool, Any]] = [(False, None)] * len(works)
    pending = list(range(len(works)))
    for run in range(1, UNIT_RUNS + 1):
        try:
            async with conn.transaction():
                await _take_batch_locks(conn, keys)
                for index in pending:
                    try:
                        async with conn.transaction():  # a SAVEPOINT
                            outcomes[index] = (True, await works[index](unit))
                    except Exception as exc:
                        outcomes[index] = (False, exc)
            if conn.broken:  # psycopg ends a block on a lost connection silently, uncommitted
                raise StaleSession("the connection was lost before the COMMIT")
        except Exception as exc:
            if run == 1:  # nothing of the batch kept: StaleSession runs it all again
                raise  # (else, as a batch whose COMMIT failed: every unit gets the error)
            # A later run failed as a whole (its BEGIN, or its COMMIT: a connection cut):
            # the units committed before keep their outcomes; the error is the others'.
            for index in pending:
                outcomes[index] = (False, exc)
            break
        pending = [i for i in pending if not outcomes[i][0] and _bad_luck(outcomes[i][1])]
        if not pending or run == UNIT_RUNS:
            break
        # the other transaction of the deadlock ends meanwhile (a few ms, randomised so that
        # two losers do not start again in step)
        await asyncio.sleep(random.uniform(0.005, 0.02) * run)
    return outcomes


class PostgresDatabase(Database):
    """`Database` on PostgreSQL: SQLAlchemy's psycopg dialect for `read()` and `write()`,
    and a psycopg pool for the units of work (`read_unit`, `write_unit`), which run as
    `PostgresUnit`s on the event loop. Each pool holds up to `SMSGW_DB_POOL_SIZE`
    connections. Group commit as on SQLite: the units queued while a batch runs go together
    in the next transaction."""

    shared = True

    def __init__(self, settings: Settings) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        self.url = settings.resolved_database_url
        self.path = ""
        # What a node keeps on its own disk (a generated JWT secret, say) goes here, and the
        # health check watches its free space, as with SQLite's file.
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._size = settings.db_pool_size
        # Every session in UTC, besides whatever options the URL gives (a search_path...).
        arguments = connect_arguments(self.url)
        given = arguments.get("options")
        options = f"{given} -c TimeZone=UTC" if given else "-c TimeZone=UTC"
        self._arguments = arguments | {"options": options}
        self.engine = create_async_engine(
            self.url,
            pool_size=self._size,
            max_overflow=0,
            pool_pre_ping=True,
            connect_args={"options": options},
            hide_parameters=True,  # no message text in an error (docs/operations.md)
        )
        self.reader = self.writer = self.engine
        self._pool: AsyncConnectionPool[Any] | None = None
        self._pool_opening: asyncio.Lock | None = None
        self._write_turn_lock: asyncio.Lock | None = None
        self._queue: list[Job[Any]] = []
        self._flusher: asyncio.Task[None] | None = None

    @property
    def connect_arguments(self) -> dict[str, Any]:
        """psycopg's arguments for a connection of this database's (the event bus's)."""
        return dict(self._arguments)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """As on SQLite, one `write()` block at a time, here in the whole cluster: in the
        process first (so that blocks waiting for their turn hold no pooled connection),
        then across processes and nodes (the advisory lock)."""
        async with self._write_turn, self.engine.begin() as conn:
            await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
            yield conn

    async def _units_pool(self) -> AsyncConnectionPool[Any]:
        if self._pool is None:
            if self._pool_opening is None:
                self._pool_opening = asyncio.Lock()
            async with self._pool_opening:
                if self._pool is None:
                    from psycopg_pool import AsyncConnectionPool

                    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                        # Batches open their transactions themselves (_run_batch).
                        kwargs=self._arguments | {"autocommit": True},
                        min_size=1,
                        max_size=self._size,
                        # How long a unit waits for a connection: while PostgreSQL is down,
                        # a request fails after this, not psycopg_pool's default 30 s.
                        timeout=POOL_WAIT_SECONDS,
                        open=False,
                    )
                    await pool.open(wait=True)
                    self._pool = pool
        return self._pool

    async def reclaim_space(self, step_pages: int = 0) -> int:
        """Nothing to do: PostgreSQL's autovacuum marks deleted rows' space for reuse by
        new rows of the same table (docs/operations.md); the files do not shrink, and
        need not (VACUUM FULL would lock the tables while it rewrites them)."""
        return 0

    def data_version(self) -> None:
        """No counter of commits on PostgreSQL (yet): callers read what they need."""
        return None

    async def ping(self) -> None:
        """A round trip through a new connection (not the pools': a ping must see whether
        a session can still be opened)."""
        import psycopg

        async with await psycopg.AsyncConnection.connect(**self._arguments) as conn:
            await conn.execute("SELECT 1")

    async def read_unit(self, work: Unit[T]) -> T:
        """`work` on a pooled connection in autocommit: each statement its own transaction,
        with no BEGIN and COMMIT of one round trip each around it (the credential and token
        lookups of every request are a single SELECT). At PostgreSQL's READ COMMITTED every
        statement of a transaction takes a snapshot of its own anyway, so a unit of several
        reads sees no less consistency than it would in one."""
        pool = await self._units_pool()
        async with pool.connection() as conn:
            try:
                return await work(PostgresUnit(conn))
            except Exception:
                if not conn.broken:
                    raise
        # Its session had ended (a restart...: see _run_batch): once more, the pool checked;
        # not waiting the pool's 30 s for a connection while PostgreSQL is down.
        await pool.check()
        async with pool.connection(timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            return await work(PostgresUnit(conn))

    async def _run_batch(
        self, works: list[Unit[Any]], locks: Collection[str] = ()
    ) -> list[tuple[bool, Any]]:
        """`_run_batch_on` a pooled connection; if its session turns out to have ended
        before the COMMIT was sent (PostgreSQL restarted, failed over, or ended an idle
        session: nothing of the batch can have been kept), the pool's idle connections are
        checked and the batch runs once more on a good one."""
        pool = await self._units_pool()
        keys = named_lock_keys(locks)
        try:
            return await self._run_batch_on(pool, works, keys)
        except StaleSession:
            await pool.check()
            return await self._run_batch_on(pool, works, keys, wait=CONNECT_TIMEOUT_SECONDS)

    async def _run_batch_on(
        self,
        pool: AsyncConnectionPool[Any],
        works: list[Unit[Any]],
        keys: list[int],
        wait: float | None = None,
    ) -> list[tuple[bool, Any]]:
        """The batch in one transaction, in pipeline mode: the locks (the shared write lock,
        then those of `keys`: named_lock_keys) go with the first statements, and each unit's
        `executemany` rows with the statement after them (PostgresUnit), so a batch takes
        one round trip per statement whose answer a unit awaits (interleaved units'
        together: _SideBySide), plus one for its COMMIT. If anything fails (a unit, or the
        COMMIT: a deadlock with another node's batch, say), it runs again without the
        pipeline, with each unit in its own SAVEPOINT, so only the failing units lose their
        changes (a batch of one unit runs again only after a deadlock or a serialization
        failure: its other errors are its own). StaleSession when the connection was found
        broken before the COMMIT was sent."""
        committing = False
        async with pool.connection(timeout=wait) as conn:
            try:
                # BEGIN and COMMIT by hand: psycopg's transaction() in a pipeline would sync
                # as it opens and at each level it closes (three round trips more a batch).
                async with conn.pipeline() as pipeline:
                    await conn.execute("BEGIN")
                    await _take_batch_locks(conn, keys)
                    done = await _in_pipeline(conn, pipeline, works)
                    committing = True
                    await conn.execute("COMMIT")  # its answer awaited as the pipeline ends
                return done
            except Exception as exc:
                if conn.broken:
                    if not committing:
                        raise StaleSession from exc
                    raise  # the COMMIT's outcome is unknown: every unit gets the error
                from psycopg.pq import TransactionStatus

                status = conn.info.transaction_status
                if status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                    await conn.execute("ROLLBACK")
                # A lone unit's own error is its outcome; but a deadlock (or a serialization
                # failure) is the transaction's bad luck, not the unit's: it runs again.
                if len(works) == 1 and not _bad_luck(exc):
                    return [(False, exc)]
            return await _unit_by_unit(conn, works, keys)

    def _batch_turn(self) -> AbstractAsyncContextManager[Any]:
        """Nothing in the process: batches run side by side (the shared advisory lock)."""
        return contextlib.nullcontext()

    async def dispose(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.engine.dispose()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
