"""`smsgw db ...`: schema management."""

from __future__ import annotations

import typer

from smsgw.cli.common import console, settings_or_exit
from smsgw.db import migrate

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade() -> None:
    """Apply all migrations to the configured database."""
    settings = settings_or_exit()
    migrate.upgrade(settings)
    console.print(f"database is up to date: {settings.resolved_database_url}", highlight=False)
