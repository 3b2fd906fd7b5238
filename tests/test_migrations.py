"""Migrations: they build the schema the models describe, and go down and up again."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, make_url, text

from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.engine import Database, UnitConnection
from smsgw.db.tables import Base

# Alembic itself, never the test process's copy of a migrated database (conftest.py).
pytestmark = pytest.mark.real_migrations

TABLES = {"users", "devices", "messages", "recipients", "message_states", "system_values"}


def test_upgrade_creates_every_table(settings: Settings) -> None:
    migrate.upgrade(settings)
    assert migrate.current_tables(settings) >= TABLES


@pytest.mark.sqlite_only("SQLite's PRAGMAs: journal mode, sync, foreign keys, busy timeout")
def test_the_database_runs_in_wal_mode_with_full_sync_and_foreign_keys(settings: Settings) -> None:
    """On the engine's connections and on group commit's own, statement journals (temp_store
    2: in memory) included."""
    migrate.upgrade(settings)
    names = ("journal_mode", "synchronous", "foreign_keys", "temp_store")

    async def unit(conn: UnitConnection) -> list[object]:
        return [(await conn.execute(f"PRAGMA {n}")).fetchone()[0] for n in names]

    async def pragmas() -> tuple[list[object], list[object]]:
        db = Database(settings)
        try:
            async with db.write() as conn:
                some = [(await conn.exec_driver_sql(f"PRAGMA {n}")).scalar() for n in names]
                some.append((await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar())
            return some, await db.write_unit(unit)
        finally:
            await db.dispose()

    engine, group_commit = asyncio.run(pragmas())
    assert engine == ["wal", 2, 1, 2, 10000]
    assert group_commit == ["wal", 2, 1, 2]


def test_migrations_match_the_models(settings: Settings) -> None:
    migrate.upgrade(settings)
    engine = create_engine(migrate.sync_url(settings))
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_links_added_before_the_bind_mode_bind_transceiver(settings: Settings) -> None:
    """0021 gives every link already there the bind mode `transceiver` (its server default)."""
    migrate.upgrade(settings, "0020")
    engine = create_engine(migrate.sync_url(settings))
    at = {"at": "2026-12-04 10:00:00"}
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO users (id, login, password_hash, created_at, updated_at)"
                " VALUES (1, 'alice', 'x', :at, :at)"), at)  # fmt: skip
            conn.execute(text(
                "INSERT INTO devices (id, user_id, name, token_hash, created_at, updated_at,"
                " last_seen) VALUES ('link1', 1, 'A', 'h', :at, :at, :at)"), at)  # fmt: skip
            conn.execute(text(
                'INSERT INTO links (device_id, kind, host, port, system_id, password,'
                ' system_type, source_addr, source_ton, source_npi, throughput, "window",'
                " data_coding, state, state_at) VALUES ('link1', 'smpp', 'smsc', 2775, 's',"
                " 'p', '', '', 5, 0, 10, 10, 0, 'new', :at)"), at)  # fmt: skip
        migrate.upgrade(settings)
        with engine.connect() as conn:
            modes = conn.execute(text("SELECT device_id, bind_mode FROM links")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in modes] == [("link1", "transceiver")]


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


def _schema(settings: Settings) -> list[tuple[str, str, str, str | None]]:
    """Every table, index and trigger as SQLite stores it (Alembic's own table aside)."""
    path = make_url(migrate.sync_url(settings)).database
    with closing(sqlite3.connect(path or "")) as conn:
        rows = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'alembic%'"
        ).fetchall()
    return sorted(rows, key=lambda row: (row[0], row[1]))


@pytest.mark.parametrize(
    "revision", ["0007", "0008", "0010", "0011", "0012", "0013", "0014", "0020", "0023"]
)
def test_a_downgrade_restores_the_schema_of_the_revision_before(
    tmp_path: Path, revision: str
) -> None:
    """Going down from head to `revision` leaves exactly what upgrading to it builds."""
    direct = Settings(data_dir=tmp_path / "direct")
    migrate.upgrade(direct, revision)
    round_trip = Settings(data_dir=tmp_path / "round-trip")
    migrate.upgrade(round_trip)
    engine = create_engine(migrate.sync_url(round_trip))
    with engine.begin() as conn:
        command.downgrade(migrate.alembic_config(conn), revision)
    engine.dispose()
    assert _schema(round_trip) == _schema(direct)
