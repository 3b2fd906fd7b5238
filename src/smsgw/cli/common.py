"""What every command shares: settings, a usable and migrated database, output, errors.

This module and the command modules import only Typer at load time: `smsgw --help` must not
pay for the web application, SQLAlchemy or Alembic. Each command imports what it uses when
it runs.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from smsgw.config import Settings
    from smsgw.db.engine import Database

T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON, as the API answers.")]
#: Tables piped to a file or another program are not cut to 80 columns (ids stay whole).
PIPED_WIDTH = 1000


@cache
def console() -> Console:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)


def say(text: str) -> None:
    """A plain line on standard output (no markup, no highlighting)."""
    console().print(text, highlight=False, markup=False, soft_wrap=True)


def fail(message: str, status: int = 1) -> NoReturn:
    """End the command with `error: message` on standard error."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(status)


#: How smsgw's own log lines read (`smsgw serve` and `smsgw links run`).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """smsgw's own log (the `smsgw.*` loggers: links, webhooks, tokens, API keys, retention)
    on standard error at `level` (SMSGW_LOG_LEVEL); other libraries' warnings and errors in
    the same form. uvicorn's own lines keep uvicorn's handlers. Without this, a server
    wrote none of smsgw's info lines, and its warnings without time or source."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    logging.getLogger("smsgw").setLevel(level.upper())


def settings_or_exit(**overrides: object) -> Settings:
    from smsgw.config import SettingsError, load_settings

    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        print(exc, file=sys.stderr, flush=True)
        raise typer.Exit(2) from None


def usable_database_or_exit(settings: Settings, data_dir: bool = True) -> None:
    """End the command with one line (status 2) if the configured database cannot be used:
    a SQLite file that cannot be created or opened; a PostgreSQL server that cannot be
    reached or refuses the session, or (with `data_dir`) a data directory that cannot be
    made, where a node keeps what is its own (a generated JWT secret)."""
    from smsgw.db.migrate import sqlite_path

    if settings.database_scheme != "sqlite":
        from smsgw.db import postgres

        problem = postgres.problem_with(settings.resolved_database_url)
        if problem is not None:
            fail(f"{problem} (see SMSGW_DATABASE_URL)", 2)
        if data_dir:
            try:
                settings.data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                fail(f"cannot use the data directory {settings.data_dir}: {reason} "
                     "(see SMSGW_DATA_DIR)", 2)  # fmt: skip
        return
    path = sqlite_path(settings)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path)
        try:
            connection.execute("PRAGMA schema_version")
        finally:
            connection.close()
    except (OSError, sqlite3.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        fail(
            f"cannot use the database {path}: {reason} (see SMSGW_DATA_DIR, SMSGW_DATABASE_URL)", 2
        )


def migrate_quietly(settings: Settings) -> None:
    """Bring the schema to the newest when it is not; with SMSGW_AUTO_MIGRATE=false, end the
    command with one line saying so instead (rather than fail on a missing table)."""
    from smsgw.db import migrate

    if migrate.is_current(settings):
        return
    if not settings.auto_migrate:
        fail("the database schema is not the newest: run `smsgw db upgrade` first", 2)
    migrate.upgrade(settings)


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    from smsgw.db.engine import database_for

    db = database_for(settings)
    try:
        yield db
    finally:
        await db.dispose()


def run(action: Callable[[Database], Awaitable[T]]) -> T:
    """Run `action` against the (migrated) database; a domain error ends the command with
    status 1 and its message."""
    import asyncio

    from smsgw.domain.errors import DomainError

    settings = settings_or_exit()
    usable_database_or_exit(settings)
    migrate_quietly(settings)

    async def main() -> T:
        async with open_database(settings) as db:
            return await action(db)

    try:
        return asyncio.run(main())
    except DomainError as exc:
        fail(exc.message)


def print_json(data: Any) -> None:
    """`data` as indented JSON on standard output, whole (never wrapped or cut)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def table(*headers: str, title: str | None = None, ids: Sequence[str] = ()) -> Table:
    """A table whose first column holds ids: never wrapped or cut, whatever the width."""
    from rich.table import Column, Table

    first = Column(headers[0], no_wrap=True, min_width=max((len(i) for i in ids), default=0))
    return Table(first, *headers[1:], title=title)


def show(rendered: Table) -> None:
    console().print(rendered)
