"""Schema migrations with Alembic (batch mode, so SQLite ALTERs work).

Alembic and SQLAlchemy are imported when a migration runs, not with this module: every CLI
command checks the schema, and one already at the newest revision is recognised with the
standard library alone (a plain `sqlite3` read of `alembic_version`), which keeps a command
such as `smsgw users list` fast.
"""

from __future__ import annotations

import re
import sqlite3
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from smsgw.config import Settings

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection

MIGRATIONS = Path(__file__).parent / "migrations"
#: What `upgrade` did: made the schema in an empty database, moved it on, or found it current.
Outcome = Literal["created", "upgraded", "current"]
_REVISION = re.compile(r"^revision(?:\s*:\s*str)?\s*=\s*[\"']([^\"']+)[\"']", re.M)
_DOWN = re.compile(r"^down_revision(?:\s*:[^=]+)?\s*=\s*[\"']([^\"']+)[\"']", re.M)


@cache
def head_revisions() -> frozenset[str]:
    """The newest revisions, read from the migration files (as Alembic's `heads`)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        text = script.read_text(encoding="utf-8")
        revisions.update(_REVISION.findall(text))
        parents.update(_DOWN.findall(text))
    return frozenset(revisions - parents)


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite file of the settings, or None (PostgreSQL, or an in-memory database)."""
    if settings.database_scheme != "sqlite":
        return None
    database = settings.resolved_database_url.split("://", 1)[1].split("?", 1)[0]
    database = database[1:] if database.startswith("/") else database
    return Path(database) if database and database != ":memory:" else None


def current_revisions(path: Path) -> set[str] | None:
    """The revisions a SQLite file is at: empty when it is new or has no schema yet, None
    when it cannot be read (Alembic then decides, and reports the problem)."""
    if not path.exists():
        return set()
    try:
        connection = sqlite3.connect(path)
    except sqlite3.Error:
        return None
    try:
        return {row[0] for row in connection.execute("SELECT version_num FROM alembic_version")}
    except sqlite3.OperationalError as exc:
        return set() if "no such table" in str(exc) else None
    except sqlite3.Error:
        return None
    finally:
        connection.close()


def sync_url(settings: Settings) -> str:
    """The synchronous driver URL for the same database (Alembic runs synchronously)."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.resolved_database_url)
    driver = "sqlite" if url.get_backend_name() == "sqlite" else "postgresql+psycopg"
    return url.set(drivername=driver).render_as_string(hide_password=False)


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(settings: Settings, revision: str = "head") -> Outcome:
    """Bring the database schema to `revision` (the newest by default); say what it did."""
    # PostgreSQL's revisions are read under the migration lock below, once.
    before = revisions_of(settings) if settings.database_scheme == "sqlite" else None
    if revision == "head" and before == set(head_revisions()):
        return "current"
    from alembic import command
    from sqlalchemy import create_engine, event

    from smsgw.db import postgres, space
    from smsgw.db.engine import ensure_sqlite_directory

    ensure_sqlite_directory(settings.resolved_database_url)
    engine = create_engine(sync_url(settings))
    if settings.database_scheme == "sqlite":
        # A file the migration creates is in incremental auto-vacuum mode (db/space.py).
        event.listen(engine, "connect", lambda conn, _: space.incremental_if_new(conn))
    try:
        with engine.begin() as connection:
            if settings.database_scheme == "postgresql":
                postgres.lock_for_migration(connection)  # one node at a time
                before = _heads(connection)  # another node may have migrated meanwhile
                if revision == "head" and before == set(head_revisions()):
                    return "current"
            command.upgrade(alembic_config(connection), revision)
    finally:
        engine.dispose()
    path = sqlite_path(settings)
    if path is not None and before != set():
        # An older file, made before incremental auto-vacuum: converted now if that is
        # quick, else `smsgw db vacuum` does it (db/space.py).
        space.convert_if_small(path)
    return "created" if before == set() else "upgraded"


def _heads(connection: Connection) -> set[str]:
    from alembic.migration import MigrationContext

    return set(MigrationContext.configure(connection).get_current_heads())


def revisions_of(settings: Settings) -> set[str] | None:
    """The revisions the configured database is at (see `current_revisions`)."""
    path = sqlite_path(settings)
    if path is not None:
        return current_revisions(path)
    if settings.database_scheme == "postgresql":
        from smsgw.db import postgres

        return postgres.current_revisions(settings.resolved_database_url)
    return None


def is_current(settings: Settings) -> bool:
    """True when the schema is at the newest revision (no Alembic needed to tell)."""
    return revisions_of(settings) == set(head_revisions())


def current_tables(settings: Settings) -> set[str]:
    from sqlalchemy import create_engine, inspect

    engine = create_engine(sync_url(settings))
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
