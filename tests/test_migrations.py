"""Migrations: they build the schema the models describe, and go down and up again."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.engine import Database
from smsgw.db.tables import Base

TABLES = {"users", "devices", "messages", "recipients", "message_states", "system_values"}


def test_upgrade_creates_every_table(settings: Settings) -> None:
    migrate.upgrade(settings)
    assert migrate.current_tables(settings) >= TABLES


def test_the_database_runs_in_wal_mode_with_full_sync_and_foreign_keys(settings: Settings) -> None:
    migrate.upgrade(settings)

    async def pragmas() -> list[object]:
        db = Database(settings)
        try:
            async with db.write() as conn:
                names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
                return [(await conn.exec_driver_sql(f"PRAGMA {n}")).scalar() for n in names]
        finally:
            await db.dispose()

    assert asyncio.run(pragmas()) == ["wal", 2, 1, 10000]


def test_migrations_match_the_models(settings: Settings) -> None:
    migrate.upgrade(settings)
    engine = create_engine(migrate.sync_url(settings))
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_downgrade_to_nothing_and_up_again(settings: Settings) -> None:
    migrate.upgrade(settings)
    engine = create_engine(migrate.sync_url(settings))
    with engine.begin() as conn:
        command.downgrade(migrate.alembic_config(conn), "base")
    assert not TABLES & migrate.current_tables(settings)
    migrate.upgrade(settings)
    assert migrate.current_tables(settings) >= TABLES
    engine.dispose()


def test_upgrade_is_idempotent(settings: Settings) -> None:
    migrate.upgrade(settings)
    migrate.upgrade(settings)
    assert migrate.current_tables(settings) >= TABLES
