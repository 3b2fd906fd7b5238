"""The database handle: a pool for reads and one serialised writer for SQLite.

SQLite allows one writer at a time. Rather than letting writers collide and spin on
`busy_timeout`, smsgw keeps a single write connection whose transactions start with
`BEGIN IMMEDIATE`: the pool hands it out in turn, so writes queue in order and a
transaction never fails half-way on a lock upgrade.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from smsgw.config import Settings


class DatabaseUnsupported(Exception):
    """The configured database cannot be used by this version of smsgw."""


class Database:
    """Owns the engines. `read()` and `write()` give connections inside a transaction."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.resolved_database_url
        if settings.database_scheme != "sqlite":
            raise DatabaseUnsupported(
                "SMSGW_DATABASE_URL points at PostgreSQL, which this version does not run on "
                "yet; unset it to use the embedded SQLite database"
            )
        ensure_sqlite_directory(self.url)
        synchronous = settings.sqlite_synchronous.value
        self.reader = _sqlite_engine(self.url, synchronous, immediate=False, pool_size=4)
        self.writer = _sqlite_engine(self.url, synchronous, immediate=True, pool_size=1)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a read transaction (rolled back at the end)."""
        async with self.reader.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction, committed when the block exits cleanly."""
        async with self.writer.begin() as conn:
            yield conn

    async def dispose(self) -> None:
        await self.reader.dispose()
        await self.writer.dispose()


def ensure_sqlite_directory(url: str) -> None:
    """Create the directory holding a SQLite file, so a first start needs no setup."""
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


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
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            f"synchronous={synchronous}",
            "foreign_keys=ON",
            "busy_timeout=10000",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine
