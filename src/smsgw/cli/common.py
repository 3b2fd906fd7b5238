"""What every command shares: settings, a migrated database, error reporting."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import typer
from rich.console import Console

from smsgw.config import Settings, SettingsError, load_settings
from smsgw.db import migrate
from smsgw.db.engine import Database, DatabaseUnsupported
from smsgw.domain.errors import DomainError

T = TypeVar("T")
console = Console()
errors = Console(stderr=True)


def settings_or_exit(**overrides: object) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        errors.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """The database, migrated to the newest schema when SMSGW_AUTO_MIGRATE allows."""
    if settings.auto_migrate:
        await asyncio.to_thread(migrate.upgrade, settings)
    db = Database(settings)
    try:
        yield db
    finally:
        await db.dispose()


def run(action: Callable[[Database], Awaitable[T]]) -> T:
    """Run `action` against the database; domain errors end the command with status 1."""
    settings = settings_or_exit()

    async def main() -> T:
        async with open_database(settings) as db:
            return await action(db)

    try:
        return asyncio.run(main())
    except DomainError as exc:
        errors.print(f"error: {exc.message}", highlight=False, markup=False)
        raise typer.Exit(1) from None
    except DatabaseUnsupported as exc:
        errors.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None


def fail(message: str) -> None:
    errors.print(f"error: {message}", highlight=False, markup=False)
    sys.exit(1)
