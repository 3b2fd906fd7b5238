"""Schema migrations with Alembic (batch mode, so SQLite ALTERs work)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, inspect
from sqlalchemy.engine import make_url

from smsgw.config import Settings
from smsgw.db.engine import ensure_sqlite_directory

MIGRATIONS = Path(__file__).parent / "migrations"


def sync_url(settings: Settings) -> str:
    """The synchronous driver URL for the same database (Alembic runs synchronously)."""
    url = make_url(settings.resolved_database_url)
    driver = "sqlite" if url.get_backend_name() == "sqlite" else "postgresql+psycopg"
    return url.set(drivername=driver).render_as_string(hide_password=False)


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the database schema to `revision` (the newest by default)."""
    ensure_sqlite_directory(settings.resolved_database_url)
    engine = create_engine(sync_url(settings))
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), revision)
    finally:
        engine.dispose()


def current_tables(settings: Settings) -> set[str]:
    engine = create_engine(sync_url(settings))
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
