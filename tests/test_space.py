"""Retention gives the space back (issue 17): a SQLite file is in incremental auto-vacuum
mode from its creation, and after retention deletes, the worker gives the free pages back a
small step at a time; an older file is converted once (at migration when small, or by
`smsgw db vacuum`). On PostgreSQL autovacuum does it: there is nothing to step through."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from typer.testing import CliRunner

from smsgw.accounts import service as accounts
from smsgw.cli import app
from smsgw.config import Settings
from smsgw.db import migrate, space
from smsgw.db.engine import Database, UnitConnection, database_for
from smsgw.messages import repository as stored
from smsgw.workers import retention
from tests.conftest import CLOCK_START, database_environment, database_rows, make_settings

T = TypeVar("T")
T0 = CLOCK_START
TEXT = "a message long enough to fill pages quickly " * 5


def with_db(settings: Settings, action: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = database_for(settings)
        try:
            return await action(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def pragma(settings: Settings, name: str) -> int:
    return int(database_rows(settings, f"PRAGMA {name}")[0][0])


def _message(n: int, when: datetime) -> dict[str, Any]:
    return {
        "ext_id": f"m{n}", "user_id": 1, "device_id": None, "pinned": False,
        "state": "Delivered", "text": TEXT, "data": None, "port": None, "is_encrypted": False,
        "sim_number": None, "with_delivery_report": True, "priority": 0, "valid_until": None,
        "schedule_at": None, "created_at": when, "updated_at": when,
    }  # fmt: skip


async def fill(db: Database, count: int, when: datetime) -> None:
    """The account and `count` messages delivered at `when`, 500 to a transaction."""
    await accounts.create_user(db, "owner", "correct horse battery")
    for start in range(0, count, 500):

        async def some(conn: UnitConnection, first: int = start) -> None:
            for n in range(first, min(first + 500, count)):
                await stored.store_message(conn, _message(n, when), ["+12025550100"], when)

        await db.write_unit(some)


def migrated(tmp_path: Path, **overrides: Any) -> Settings:
    settings = make_settings(tmp_path / "data", **overrides)
    migrate.upgrade(settings)
    return settings


def test_retention_gives_the_space_back(tmp_path: Path, at: list[datetime]) -> None:
    """SQLite: the file's pages fall back to about what the schema needs, no page stays
    free; PostgreSQL: the rows go and no step is taken (autovacuum's part)."""
    settings = migrated(tmp_path, retention_days=1)
    with_db(settings, lambda db: fill(db, 3000, T0))
    sqlite = settings.database_scheme == "sqlite"
    if sqlite:
        full = pragma(settings, "page_count")
        assert pragma(settings, "freelist_count") == 0
    at[0] = T0 + timedelta(days=1, minutes=1)
    gone = with_db(settings, lambda db: retention.sweep(db, settings))
    assert gone["messages"] == 3000
    assert database_rows(settings, "SELECT count(*) FROM messages")[0][0] == 0
    if not sqlite:
        assert gone["pages"] == 0
        return
    assert gone["pages"] > full // 2, (gone, full)
    assert pragma(settings, "freelist_count") == 0
    assert pragma(settings, "page_count") < full // 4
    path = migrate.sqlite_path(settings)
    assert path is not None  # the file itself shrank (the WAL was checkpointed on close)
    assert os.path.getsize(path) <= pragma(settings, "page_count") * pragma(settings, "page_size")
    # Nothing more to give back: the next round takes no step.
    assert with_db(settings, lambda db: retention.sweep(db, settings))["pages"] == 0


@pytest.mark.sqlite_only("SQLite's free pages and auto_vacuum mode")
def test_the_space_comes_back_in_small_steps_each_its_own_write(
    tmp_path: Path, at: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = migrated(tmp_path, retention_days=1)
    with_db(settings, lambda db: fill(db, 2000, T0))
    database_rows(settings, "DELETE FROM messages")
    free = pragma(settings, "freelist_count")
    assert free > 100
    steps: list[tuple[int, bool]] = []
    step = space.vacuum_step

    async def reclaim(db: Database) -> int:
        def counted(conn: sqlite3.Connection, pages: int) -> int:
            assert not conn.in_transaction  # each step is a transaction of its own
            freed = step(conn, pages)
            # Both turns held, as a batch holds them (the file's: db/turn.py).
            steps.append((freed, db._write_turn.locked() and bool(db._turn and db._turn.held)))
            return freed

        monkeypatch.setattr(space, "vacuum_step", counted)
        return await db.reclaim_space(step_pages=16)

    assert with_db(settings, reclaim) == free
    assert len(steps) == free // 16 + 1
    assert all(freed <= 16 and held for freed, held in steps), steps
    assert pragma(settings, "freelist_count") == 0


@pytest.mark.sqlite_only("SQLite's auto_vacuum mode")
def test_a_new_file_is_in_incremental_mode_however_it_is_made(tmp_path: Path) -> None:
    assert pragma(migrated(tmp_path / "migrated"), "auto_vacuum") == space.INCREMENTAL
    settings = make_settings(tmp_path / "bare" / "data")  # the server's own connections

    async def first_table(db: Database) -> None:
        async with db.write() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")

    with_db(settings, first_table)
    assert pragma(settings, "auto_vacuum") == space.INCREMENTAL


def _old_file(settings: Settings) -> Path:
    """The settings' file as an older smsgw made it: auto_vacuum none."""
    path = migrate.sqlite_path(settings)
    assert path is not None
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA auto_vacuum=NONE")
        conn.execute("VACUUM")
    conn.close()
    assert space.mode_of(path) == space.NONE
    return path


@pytest.mark.sqlite_only("SQLite's auto_vacuum mode")
def test_a_migration_converts_an_older_file_when_it_is_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = make_settings(tmp_path / "small")
    migrate.upgrade(small, "0008")
    path = _old_file(small)
    assert migrate.upgrade(small) == "upgraded"
    assert space.mode_of(path) == space.INCREMENTAL
    monkeypatch.setattr(space, "CONVERT_AT_MIGRATE_BYTES", 1024)  # "big": left for db vacuum
    big = make_settings(tmp_path / "big")
    migrate.upgrade(big, "0008")
    path = _old_file(big)
    assert migrate.upgrade(big) == "upgraded"
    assert space.mode_of(path) == space.NONE


def test_db_vacuum_converts_and_shrinks_a_file_or_says_there_is_nothing_to_do(
    tmp_path: Path,
) -> None:
    settings = migrated(tmp_path)
    env = {"SMSGW_DATA_DIR": str(tmp_path / "data"), **database_environment(settings)}
    if settings.database_scheme != "sqlite":
        result = CliRunner().invoke(app, ["db", "vacuum"], env=env)
        assert result.exit_code == 0, result.output
        assert "nothing to do" in result.output and "autovacuum" in result.output
        return
    path = _old_file(settings)
    empty = os.path.getsize(path)  # the schema alone
    with_db(settings, lambda db: fill(db, 2000, T0))
    # No cascade on a bare file; the count changes of the rows deleted go too.
    for table in ("message_states", "recipients", "messages", "message_count_changes"):
        database_rows(settings, f"DELETE FROM {table}")  # noqa: S608
    size = os.path.getsize(path)
    assert size > 2 * empty
    result = CliRunner().invoke(app, ["db", "vacuum"], env=env)
    assert result.exit_code == 0, result.output
    assert "auto_vacuum none -> incremental" in result.output
    assert space.mode_of(path) == space.INCREMENTAL
    assert os.path.getsize(path) <= empty + 16 * 4096  # the pages freed went back


@pytest.mark.sqlite_only("SQLite's auto_vacuum mode")
def test_the_worker_warns_once_when_retention_cannot_shrink_an_older_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = migrated(tmp_path, retention_days=7)
    db = database_for(settings)
    assert retention.gives_space_back(db, settings)
    path = _old_file(settings)
    with caplog.at_level("WARNING", logger="smsgw.workers"):
        assert not retention.gives_space_back(db, settings)
    assert "smsgw db vacuum" in caplog.text and str(path) in caplog.text
    unset = make_settings(tmp_path / "data")  # the same file, SMSGW_RETENTION_DAYS unset
    assert retention.gives_space_back(database_for(unset), unset)
