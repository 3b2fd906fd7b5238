"""`smsgw db ...`: schema management."""

from __future__ import annotations

import typer

from smsgw.cli.common import say, settings_or_exit, usable_database_or_exit

app = typer.Typer(help="Database schema.", no_args_is_help=True)

#: What `db upgrade` says for each outcome of the migration.
SAID = {
    "created": "database created",
    "upgraded": "database upgraded to the newest schema",
    "current": "database is up to date",
}


@app.command("upgrade")
def upgrade() -> None:
    """Create the database, or bring its schema to the newest version (`serve` does this
    itself on start unless SMSGW_AUTO_MIGRATE=false)."""
    from smsgw.db import migrate

    settings = settings_or_exit()
    usable_database_or_exit(settings)
    outcome = migrate.upgrade(settings)
    say(f"{SAID[outcome]}: {migrate.sqlite_path(settings) or settings.resolved_database_url}")
