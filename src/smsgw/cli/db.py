"""`smsgw db ...`: schema management."""

from __future__ import annotations

import typer

from smsgw.cli.common import fail, say, settings_or_exit, usable_database_or_exit

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
    from sqlalchemy.exc import DBAPIError

    from smsgw.db import migrate, postgres

    settings = settings_or_exit()
    usable_database_or_exit(settings)
    try:
        outcome = migrate.upgrade(settings)
    except DBAPIError as exc:  # the server refused a statement (rights, a lock, space...)
        fail(f"the migration failed: {str(exc.orig).strip().splitlines()[0]}", 1)
    where = migrate.sqlite_path(settings) or postgres.shown(settings.resolved_database_url)
    say(f"{SAID[outcome]}: {where}")
