"""PostgreSQL specifics (issue 16, under way): whether a server can be used, its schema
revision, and the lock that keeps nodes from migrating at once. psycopg is imported only
here and in SQLAlchemy's dialect, when a PostgreSQL URL is used."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from smsgw.db.engine import Rows, UnitConnection

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy import Connection

#: PostgreSQL's dialect through psycopg, whose type processing units apply (db/engine.py).
POSTGRESQL = PGDialect_psycopg()  # type: ignore[no-untyped-call]

#: The advisory lock every node takes around a migration (any constant both agree on).
MIGRATION_LOCK = 0x736D7367  # "smsg"
CONNECT_TIMEOUT_SECONDS = 5


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
    before it returns, as SQLite's cursor holds them."""

    __slots__ = ("_conn",)
    dialect = POSTGRESQL

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> Rows:
        cursor = await self._conn.execute(placeholders(sql), tuple(params))
        rows = await cursor.fetchall() if cursor.description is not None else []
        return Fetched(rows, cursor.rowcount)

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        async with self._conn.cursor() as cursor:
            await cursor.executemany(placeholders(sql), [tuple(row) for row in rows])


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


@functools.lru_cache(maxsize=1024)
def placeholders(sql: str) -> str:
    """A unit's statement in psycopg's placeholders: `?` -> `%s`, a literal `%` doubled.
    The units' SQL holds no `?` in a string literal or a name (they are written so)."""
    return sql.replace("%", "%%").replace("?", "%s")
