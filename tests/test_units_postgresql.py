"""The hot path's units of work on PostgreSQL (issue 16, under way): the same repository
functions that store, pull and report messages run on a `PostgresUnit` over psycopg, against
the schema the migrations build there, and give what they give on SQLite.

The server itself does not run on PostgreSQL yet (cli/common.py refuses it); these tests pin
the SQL and the type conversions that it will run."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from smsgw.accounts.models import User
from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.base import table_of
from smsgw.db.engine import RowInsert, SQLiteUnit, UnitConnection
from smsgw.db.postgres import PostgresUnit, connect_arguments, placeholders
from smsgw.devices import repository as device_rows
from smsgw.devices.models import Device
from smsgw.domain.states import ProcessingState
from smsgw.logs import service as logs
from smsgw.messages import repository as stored
from smsgw.routing import repository as routing
from smsgw.routing import service as routing_service
from smsgw.routing.repository import Phone
from smsgw.routing.service import RecipientReport, StateReport
from tests.conftest import make_settings
from tests.pgcluster import Cluster

NOW = datetime(2026, 7, 14, 3, 11, 12, 345000, tzinfo=UTC)
NUMBERS = ["+12025550100", "+12025550101"]
SIMS = [{"slot": 1, "carrier": "Test"}]

Scenario = Callable[[UnitConnection], Awaitable[Any]]


@pytest.fixture
def pg_settings(pg_cluster: Cluster, tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path / "pg", database_url=pg_cluster.create_database())
    migrate.upgrade(settings)
    return settings


async def _on_postgresql(settings: Settings, steps: list[Scenario]) -> list[Any]:
    """Each step in its own transaction on one psycopg connection, as a batch would run."""
    arguments = connect_arguments(settings.resolved_database_url)
    results = []
    async with await psycopg.AsyncConnection.connect(**arguments, autocommit=True) as conn:
        unit = PostgresUnit(conn)
        for step in steps:
            async with conn.transaction():
                results.append(await step(unit))
    return results


async def _on_sqlite(settings: Settings, steps: list[Scenario]) -> list[Any]:
    path = settings.data_dir / "smsgw.db"
    results = []
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA foreign_keys=ON")
        unit = SQLiteUnit(conn)
        for step in steps:
            conn.execute("BEGIN IMMEDIATE")
            results.append(await step(unit))
            conn.execute("COMMIT")
    return results


def _message(ext_id: str, created: datetime) -> dict[str, Any]:
    return {
        "ext_id": ext_id, "user_id": 1, "device_id": None, "pinned": False, "state": "Pending",
        "text": f"text of {ext_id}", "data": None, "port": None, "is_encrypted": False,
        "sim_number": None, "with_delivery_report": True, "priority": 0,
        "valid_until": created + timedelta(hours=1), "schedule_at": None,
        "created_at": created, "updated_at": created,
    }  # fmt: skip


def _steps() -> list[Scenario]:
    phone = Phone("phone1", 1, frozenset({1}))

    async def setup(conn: UnitConnection) -> tuple[int, list[int]]:
        user = await RowInsert(table_of(User)).one(conn, {
            "login": "owner", "password_hash": "x", "created_at": NOW, "updated_at": NOW,
        })  # fmt: skip
        await RowInsert(table_of(Device)).many(conn, [{
            "id": "phone1", "user_id": user, "name": "phone", "token_hash": "t" * 64,
            "push_token": None, "sim_cards": SIMS, "app_version": None,
            "created_at": NOW, "updated_at": NOW, "last_seen": NOW,
        }])  # fmt: skip
        keys = [
            await stored.store_message(
                conn, _message(f"m{i}", NOW + timedelta(seconds=i)), NUMBERS, NOW
            )
            for i in range(3)
        ]
        return user, keys

    async def look(conn: UnitConnection) -> tuple[Any, ...]:
        return (
            await stored.ext_id_in_use(conn, 1, "m0"),
            await stored.ext_id_in_use(conn, 1, "nope"),
            await stored.devices_last_seen(conn, 1, "phone1"),
            await device_rows.auth_by_token_hash(conn, "t" * 64),
            await routing.has_claimable(conn, phone, NOW + timedelta(minutes=1)),
            await routing.in_flight(conn, "phone1"),
        )

    async def pull(conn: UnitConnection) -> tuple[list[int], list[Any]]:
        later = NOW + timedelta(minutes=1)
        claimed = await routing.claim(conn, phone, 2, later, newest_first=False)
        held = await routing.held(conn, phone, False, later)
        return claimed, held

    async def report(conn: UnitConnection) -> tuple[Any, ...]:
        snapshot = StateReport(
            "m0",
            ProcessingState.DELIVERED,
            [RecipientReport(n, ProcessingState.DELIVERED, None) for n in NUMBERS],
            {ProcessingState.PROCESSED: NOW, ProcessingState.DELIVERED: NOW},
        )
        done = await routing_service._apply(
            conn, phone, snapshot, NOW, events=True, wait=routing_service.outbox.NO_WAIT
        )
        again = await routing_service._apply(
            conn, phone, snapshot, NOW, events=True, wait=routing_service.outbox.NO_WAIT
        )
        await logs.record_unit(conn, 1, "messages", logs.Priority.INFO, "reported", {"n": 1})
        found = await routing.reported_message(conn, phone, "m0")
        assert found is not None
        key, state = found
        return done, again, state, sorted(await routing.history_states(conn, key))

    return [setup, look, pull, report]


def test_the_hot_paths_units_give_the_same_on_both_engines(
    pg_settings: Settings, settings: Settings
) -> None:
    migrate.upgrade(settings)
    on_postgresql = asyncio.run(_on_postgresql(pg_settings, _steps()))
    on_sqlite = asyncio.run(_on_sqlite(settings, _steps()))
    assert on_postgresql == on_sqlite

    (user, keys), look, (claimed, held), (done, again, state, history) = on_postgresql
    assert user == 1 and len(keys) == 3
    in_use, not_in_use, last_seen, auth, claimable, in_flight = look
    assert (in_use, not_in_use, claimable, in_flight) == (True, False, True, 0)
    assert last_seen == [NOW]  # a UTC datetime back, to the microsecond
    assert auth == ("phone1", 1, SIMS, None)  # the JSON column read back
    assert claimed == keys[:2]  # oldest first
    assert [r.id for r in held] == ["m0", "m1"]
    first = held[0]
    assert first.created_at == NOW and first.valid_until == NOW + timedelta(hours=1)
    assert first.with_delivery_report is True and first.is_encrypted is False
    assert [r.phone_number for r in first.recipients] == NUMBERS
    assert done.settled and done.freed == 1 and again.settled
    assert (again.freed, again.events) == (0, 0)
    assert state == "Delivered"
    assert history == ["Delivered", "Pending", "Processed"]


def test_placeholders_become_psycopgs() -> None:
    assert placeholders("SELECT 1 WHERE a = ? AND b LIKE 'x%'") == (
        "SELECT 1 WHERE a = %s AND b LIKE 'x%%'"
    )
