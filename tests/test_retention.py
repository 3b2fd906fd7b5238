"""SMSGW_RETENTION_DAYS (issue 17): the worker deletes sent messages (a final state, or Sent)
and received ones past the retention period, with their recipients, history and attachments,
in small batches; nothing younger, and no message still on its way. The clock is moved, not
waited for (domain/clock.set_clock)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from smsgw.accounts import service as accounts
from smsgw.config import Settings, SettingsError
from smsgw.db import migrate
from smsgw.db.base import table_of
from smsgw.db.engine import Database, database_for, delete_older
from smsgw.inbox import service as inbox
from smsgw.inbox.models import InboxAttachment, InboxMessage
from smsgw.logs.models import LogEntry
from smsgw.messages import repository as stored
from smsgw.messages import service as messages
from tests.conftest import CLOCK_START, database_rows, make_settings, running

T0 = CLOCK_START
STATES = ["Pending", "Processed", "Sent", "Delivered", "Failed", "Cancelled"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path / "data", retention_days=30)
    migrate.upgrade(settings)
    return settings


def _message(ext_id: str, state: str, when: datetime) -> dict[str, Any]:
    return {
        "ext_id": ext_id, "user_id": 1, "device_id": None, "pinned": False, "state": state,
        "text": "hi", "data": None, "port": None, "is_encrypted": False, "sim_number": None,
        "with_delivery_report": True, "priority": 0, "valid_until": None, "schedule_at": None,
        "created_at": when, "updated_at": when,
    }  # fmt: skip


async def _fill(db: Database, when: datetime, prefix: str) -> None:
    """One message in each state and two received ones (one with an attachment), at `when`."""
    for state in STATES:
        await db.write_unit(
            lambda conn, s=state: stored.store_message(  # type: ignore[misc]
                conn, _message(f"{prefix}-{s}", s, when), ["+12025550100", "+12025550101"], when
            )
        )
    async with db.write() as conn:
        for i in range(2):
            row = await conn.execute(
                insert(table_of(InboxMessage)).values(
                    ext_id=f"{prefix}in{i}", user_id=1, device_id=None, dedupe_key=f"{prefix}{i}",
                    type="SMS", message_id=f"{prefix}{i}", text="hello", received_at=when,
                    created_at=when,
                ).returning(table_of(InboxMessage).c.id)
            )  # fmt: skip
            if i == 0:
                await conn.execute(insert(table_of(InboxAttachment)).values(
                    inbox_pk=row.scalar_one(), part_id=1, content_type="image/png", data=b"x",
                ))  # fmt: skip


def _left(settings: Settings) -> dict[str, list[Any]]:
    def rows(sql: str) -> list[Any]:
        return sorted(row[0] for row in database_rows(settings, sql))

    return {
        "messages": rows("SELECT ext_id FROM messages"),
        "recipients": rows("SELECT DISTINCT message_id FROM recipients"),
        "history": rows("SELECT DISTINCT message_id FROM message_states"),
        "keys": rows("SELECT id FROM messages"),
        "inbox": rows("SELECT ext_id FROM inbox"),
        "attachments": rows("SELECT count(*) FROM inbox_attachments"),
    }


def test_retention_deletes_what_is_done_and_old_and_nothing_else(
    settings: Settings, at: list[datetime]
) -> None:
    async def prune(when: datetime) -> tuple[int, int]:
        at[0] = when
        db = database_for(settings)
        try:
            return await messages.prune(db, 30), await inbox.prune(db, 30)
        finally:
            await db.dispose()

    async def fill() -> None:
        db = database_for(settings)
        try:
            await accounts.create_user(db, "owner", "correct horse battery")
            await _fill(db, T0, "old")
            await _fill(db, T0 + timedelta(days=20), "new")
        finally:
            await db.dispose()

    asyncio.run(fill())
    assert asyncio.run(prune(T0 + timedelta(days=29, hours=23))) == (0, 0)
    assert len(_left(settings)["messages"]) == 12
    # Past 30 days for the old ones only: the sent and final ones go, with their details;
    # what is still on its way (Pending, Processed) stays, old or not.
    assert asyncio.run(prune(T0 + timedelta(days=30, minutes=1))) == (4, 2)
    left = _left(settings)
    gone = {f"old-{s}" for s in ("Sent", "Delivered", "Failed", "Cancelled")}
    assert set(left["messages"]) == {f"{p}-{s}" for p in ("old", "new") for s in STATES} - gone
    assert left["recipients"] == left["history"] == left["keys"]
    assert left["inbox"] == ["newin0", "newin1"] and left["attachments"] == [1]
    assert asyncio.run(prune(T0 + timedelta(days=51))) == (4, 2)
    left = _left(settings)
    assert left["messages"] == sorted(f"{p}-{s}" for p in ("old", "new") for s in STATES[:2])
    assert left["inbox"] == [] and left["attachments"] == [0]
    assert left["recipients"] == left["history"] == left["keys"]


def test_deleting_goes_in_batches_each_committed_in_its_own_write(settings: Settings) -> None:
    """Seven old event-log entries and a young one, batches of two: four writes, each
    committed before the next begins (the rows left, seen from outside after each: 6, 4, 2,
    1), the young entry untouched; and a first look with a read that finds nothing costs no
    write at all."""
    entries = table_of(LogEntry)
    left_after_writes: list[int] = []

    async def scenario() -> tuple[int, int]:
        db = database_for(settings)
        await accounts.create_user(db, "owner", "correct horse battery")
        async with db.write() as conn:
            await conn.execute(insert(entries), [
                {"user_id": 1, "created_at": T0 + timedelta(hours=hours), "module": "messages",
                 "priority": "INFO", "message": f"entry {hours}", "context": None}
                for hours in range(8)
            ])  # fmt: skip
        write = db.write

        @asynccontextmanager
        async def counted() -> AsyncIterator[Any]:
            async with write() as conn:
                yield conn
            left = database_rows(settings, "SELECT count(*) FROM event_log")[0][0]
            left_after_writes.append(left)

        db.write = counted  # type: ignore[method-assign]
        try:
            before = T0 + timedelta(hours=6, minutes=30)
            first = await delete_older(db, entries.c.created_at, before, batch=2)
            again = await delete_older(db, entries.c.created_at, before, batch=2)
            return first, again
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == (7, 0)
    assert left_after_writes == [6, 4, 2, 1]
    assert database_rows(settings, "SELECT message FROM event_log") == [("entry 7",)]


def test_the_setting_is_off_unless_given_and_refuses_nonsense(tmp_path: Path) -> None:
    assert make_settings(tmp_path / "a").retention_days is None
    assert make_settings(tmp_path / "b", retention_days=1).retention_days == 1
    for wrong in (0, -1, 36501):
        with pytest.raises(SettingsError, match="SMSGW_RETENTION_DAYS"):
            make_settings(tmp_path / "c", retention_days=wrong)


def test_the_worker_of_a_running_server_applies_it(settings: Settings, at: list[datetime]) -> None:
    """The wiring: a server started with SMSGW_RETENTION_DAYS=30 a month after the messages
    were made deletes the old done ones in its worker's first round."""

    async def fill() -> None:
        db = database_for(settings)
        try:
            await accounts.create_user(db, "owner", "correct horse battery")
            await _fill(db, T0, "old")
        finally:
            await db.dispose()

    asyncio.run(fill())
    at[0] = T0 + timedelta(days=31)
    with running(settings):
        deadline = time.monotonic() + 60
        while len((left := _left(settings))["messages"]) != 2 or left["inbox"]:
            assert time.monotonic() < deadline, left
            time.sleep(0.1)
    assert left["messages"] == ["old-Pending", "old-Processed"]
