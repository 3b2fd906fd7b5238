"""`smsgw db ...`: schema management, and the copy from SQLite to PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from smsgw.cli.common import console, fail, say, settings_or_exit, usable_database_or_exit

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from smsgw.config import Settings
    from smsgw.db.copy_to_postgres import Counted
    from smsgw.db.copy_to_postgres import Progress as CopyProgress
    from smsgw.db.migrate import Outcome

app = typer.Typer(help="Database schema; the copy from SQLite to PostgreSQL.", no_args_is_help=True)

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
    from smsgw.db import migrate, postgres

    settings = settings_or_exit()
    usable_database_or_exit(settings, data_dir=False)  # a migration keeps nothing there
    outcome = migrated_or_exit(settings)
    where = migrate.sqlite_path(settings) or postgres.shown(settings.resolved_database_url)
    say(f"{SAID[outcome]}: {where}")


@app.command("vacuum")
def vacuum() -> None:
    """Give a SQLite file's free space back to the file system, once, and put a file made
    before incremental auto-vacuum in that mode, so that from then on retention gives the
    space back as it deletes (SMSGW_RETENTION_DAYS; docs/operations.md).

    A full VACUUM: it rewrites the file, needs as much free disk space for a moment, and
    holds the write lock throughout (minutes for gigabytes): stop the gateway first, or its
    writes wait meanwhile. On PostgreSQL there is nothing to do (autovacuum)."""
    import sqlite3

    from smsgw.db import migrate, space

    settings = settings_or_exit()
    path = migrate.sqlite_path(settings)
    if path is None:
        say("nothing to do: PostgreSQL's autovacuum makes deleted rows' space reusable")
        return
    if not path.exists():
        fail(f"no database at {path}", 2)
    try:
        before, after = space.convert(path)
    except sqlite3.Error as exc:
        fail(f"VACUUM failed: {exc}", 1)
    mib = 1024 * 1024
    say(
        f"{path}: {before.bytes / mib:.1f} MiB ({before.freelist_count} free pages) -> "
        f"{after.bytes / mib:.1f} MiB; auto_vacuum {MODES[before.mode]} -> {MODES[after.mode]}"
    )


#: `PRAGMA auto_vacuum`'s values, named.
MODES = {0: "none", 1: "full", 2: "incremental"}


def migrated_or_exit(settings: Settings) -> Outcome:
    """Run the migrations; a statement the server refuses, or a schema this smsgw does not
    know (a newer smsgw's), ends the command with one line (status 1)."""
    from alembic.util import CommandError
    from sqlalchemy.exc import DBAPIError

    from smsgw.db import migrate

    try:
        return migrate.upgrade(settings)
    except DBAPIError as exc:  # the server refused a statement (rights, a lock, space...)
        fail(f"the migration failed: {str(exc.orig).strip().splitlines()[0]}", 1)
    except CommandError as exc:  # a revision this smsgw does not have, say
        fail(f"the migration failed: {str(exc).strip().splitlines()[0]}", 1)


ToOption = Annotated[
    str,
    typer.Option(
        "--to",
        metavar="URL",
        show_default=False,
        help="The PostgreSQL database to fill: postgresql://user:password@host:5432/smsgw "
        "(it must exist and hold no smsgw rows; db copy creates or upgrades its schema).",
    ),
]


@app.command("copy")
def copy(to: ToOption) -> None:
    """Copy this installation's SQLite database into a new PostgreSQL database.

    The SQLite file is SMSGW_DATABASE_URL's, else smsgw.db in SMSGW_DATA_DIR.

    Stop the gateway first: the file must not change while it is read."""
    import time

    from smsgw.db import copy_to_postgres as copying
    from smsgw.db import postgres

    source = sqlite_source_or_exit(settings_or_exit())
    target = postgresql_target_or_exit(to)
    migrated_or_exit(target)
    url = target.resolved_database_url
    say(f"copying {source} to {postgres.shown(url)}")
    started = time.monotonic()
    try:
        with progress_bar() as progress:
            done = copying.copy(source, url, progress)
    except copying.CopyFailed as exc:
        summary(exc.counted)
        fail(str(exc), 1)
    took = time.monotonic() - started
    summary(done.counted)
    say(
        f"copied {done.rows} rows in {took:.1f} s ({done.rows / max(took, 1e-6):.0f} rows/s); "
        f"{done.sequences} key sequences set past the copied keys"
    )
    say("next: set SMSGW_DATABASE_URL to this database's URL and start smsgw")


def sqlite_source_or_exit(settings: Settings) -> Path:
    """The SQLite file the settings name, ready to be copied; else one line and the end."""
    from smsgw.db import copy_to_postgres, migrate, postgres

    if settings.database_scheme != "sqlite":
        url = postgres.shown(settings.resolved_database_url)
        fail(f"db copy reads a SQLite database; SMSGW_DATABASE_URL names {url}", 2)
    path = migrate.sqlite_path(settings)
    if path is None:
        fail("db copy reads a SQLite file, not an in-memory database (SMSGW_DATABASE_URL)", 2)
    problem = copy_to_postgres.source_problem(path)
    if problem is not None:
        fail(problem, 1)
    return path


def postgresql_target_or_exit(to: str) -> Settings:
    """The settings of the `--to` database, a PostgreSQL server that takes a session."""
    from smsgw.config import POSTGRES_SCHEMES
    from smsgw.db import postgres

    scheme = to.split("://", 1)[0].lower() if "://" in to else ""
    if scheme not in POSTGRES_SCHEMES:
        given = f"a {scheme}:// URL" if scheme else "no URL"
        fail(f"--to takes a PostgreSQL URL (postgresql://user:password@host/name), not {given}", 2)
    target = settings_or_exit(database_url=to)
    problem = postgres.problem_with(target.resolved_database_url)
    if problem is not None:
        fail(f"{problem} (see --to)", 2)
    return target


class _Bar:
    """rich's progress bar over the whole copy, named after the table being copied."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def start(self, rows: int) -> None:
        self._task = self._progress.add_task("copying", total=rows)

    def table(self, name: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, description=name)

    def advance(self, rows: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, rows)


class _Quiet:
    """No progress shown (output that is not a terminal stays plain)."""

    def start(self, rows: int) -> None:
        pass

    def table(self, name: str) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass


@contextmanager
def progress_bar() -> Iterator[CopyProgress]:
    """A progress bar on a terminal (gone when the copy ends), nothing elsewhere."""
    if not console().is_terminal:
        yield _Quiet()
        return
    from rich import progress

    columns = (
        progress.TextColumn("{task.description:<20}"),
        progress.BarColumn(),
        progress.MofNCompleteColumn(),
        progress.TimeElapsedColumn(),
    )
    with progress.Progress(*columns, console=console(), transient=True) as bar:
        yield _Bar(bar)


def summary(counted: Sequence[Counted]) -> None:
    """Every table's rows on both sides, one line each (plain text, for logs too)."""
    if not counted:
        return
    width = max(len(c.table) for c in counted)
    say(f"{'table':<{width}}  {'sqlite':>10}  {'postgresql':>10}")
    for c in counted:
        differs = "" if c.source == c.target else "  differs"
        say(f"{c.table:<{width}}  {c.source:>10}  {c.target:>10}{differs}")
