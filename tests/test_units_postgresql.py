"""The hot path's units of work on PostgreSQL (issue 16, under way): the same repository
functions that store, pull and report messages run on a `PostgresUnit` over psycopg, against
the schema the migrations build there, and give what they give on SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import MetaData, Table

from smsgw.accounts.models import User
from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.base import table_of
from smsgw.db.engine import (
    ColumnReader,
    Details,
    RowInsert,
    SQLiteUnit,
    UnitConnection,
    placeholders,
)
from smsgw.db.postgres import POSTGRESQL, PostgresUnit, connect_arguments
from smsgw.devices import repository as device_rows
from smsgw.devices.models import Device
from smsgw.domain.states import ProcessingState
from smsgw.logs import service as logs
from smsgw.messages import repository as stored
from smsgw.messages.models import Message, MessageStateEntry, Recipient
from smsgw.routing import repository as routing
from smsgw.routing import service as routing_service
from smsgw.routing.budgets import Budget, Limits, day_of, minute_of
from smsgw.routing.repository import Phone
from smsgw.routing.service import RecipientReport, StateReport
from tests.conftest import make_settings
from tests.pgcluster import Cluster

pytestmark = pytest.mark.one_engine("they choose their engines themselves")  # conftest.py

NOW = datetime(2026, 7, 14, 3, 11, 12, 345000, tzinfo=UTC)
NUMBERS = ["+12025550100", "+12025550101"]
SIMS = [{"slot": 1, "carrier": "Test"}]
#: Phones' rows as a unit writes them; `virtual` is left to its server default (RowInsert
#: refuses a column whose default the database computes).
DEVICE_ROWS = RowInsert(
    Table(
        "devices",
        MetaData(),
        *(column._copy() for column in table_of(Device).columns if column.name != "virtual"),
    )
)

Scenario = Callable[[UnitConnection], Awaitable[Any]]


@pytest.fixture
def pg_settings(pg_cluster: Cluster, tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path / "pg", database_url=pg_cluster.create_database())
    migrate.upgrade(settings)
    return settings


async def _on_postgresql(
    settings: Settings, steps: list[Scenario], failing: bool = False
) -> list[Any]:
    """Each step in its own transaction on one psycopg connection, as a batch would run
    (`failing`: each in a SAVEPOINT, as a batch's units when it runs again apart; a step
    that breaks a constraint gives "refused")."""
    arguments = connect_arguments(settings.resolved_database_url)
    results = []
    async with await psycopg.AsyncConnection.connect(**arguments, autocommit=True) as conn:
        unit = PostgresUnit(conn)
        for step in steps:
            async with conn.transaction():
                if failing:
                    try:
                        async with conn.transaction():  # a SAVEPOINT
                            results.append(await step(unit))
                    except psycopg.IntegrityError:
                        results.append("refused")
                else:
                    results.append(await step(unit))
    return results


async def _on_sqlite(settings: Settings, steps: list[Scenario], failing: bool = False) -> list[Any]:
    path = settings.data_dir / "smsgw.db"
    results = []
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA foreign_keys=ON")
        unit = SQLiteUnit(conn)
        for step in steps:
            conn.execute("BEGIN IMMEDIATE")
            if failing:
                conn.execute("SAVEPOINT step")
                try:
                    results.append(await step(unit))
                except sqlite3.IntegrityError:
                    conn.execute("ROLLBACK TO step")
                    results.append("refused")
                conn.execute("RELEASE step")
            else:
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
        await DEVICE_ROWS.many(conn, [{
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
            await routing.pull_state(conn, "phone1", NOW),
        )

    async def pull(conn: UnitConnection) -> tuple[Any, ...]:
        later = NOW + timedelta(minutes=1)
        claimed = await routing.claim(conn, phone, 2, later, newest_first=False)
        # Within a budget: the last one fits in 1 part (a window function over the choice).
        budgeted = await routing.claim(conn, phone, 5, later, False, room=1, first_max=0)
        used = Budget(Limits(5, 0), 0, 0).spend(3)
        await routing.save_usage(conn, "phone1", later, used)
        await routing.save_usage(conn, "phone1", later, used.spend(1))  # (the upsert's update)
        held = await routing.held(conn, phone, False, later)
        state = await routing.pull_state(conn, "phone1", later)
        # (an UPDATE's RETURNING has no order)
        return sorted(claimed), budgeted, held, state

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

    (user, keys), look, (claimed, budgeted, held, pulled), (done, again, state, history) = (
        on_postgresql
    )
    assert user == 1 and len(keys) == 3
    in_use, not_in_use, last_seen, auth, claimable, phone_state = look
    assert (in_use, not_in_use, claimable) == (True, False, True)
    assert phone_state == routing.PullState(0, None, None, (None, None, None, None), 0)
    assert budgeted == [(keys[2], 1)]  # (key, parts)
    minute, day = minute_of(NOW + timedelta(minutes=1)), day_of(NOW)
    assert pulled == routing.PullState(3, None, None, (minute, 4, day, 4), 0)
    assert last_seen == [NOW]  # a UTC datetime back, to the microsecond
    assert auth == ("phone1", 1, SIMS, None)  # the JSON column read back
    assert claimed == [(key, 1) for key in keys[:2]]  # oldest first; (key, parts)
    assert [r.id for r in held] == ["m0", "m1", "m2"]
    first = held[0]
    assert first.created_at == NOW and first.valid_until == NOW + timedelta(hours=1)
    assert first.with_delivery_report is True and first.is_encrypted is False
    assert [r.phone_number for r in first.recipients] == NUMBERS
    assert done.settled and done.freed == 1 and again.settled
    assert (again.freed, again.events) == (0, 0)
    assert state == "Delivered"
    assert history == ["Delivered", "Pending", "Processed"]


def _families() -> list[Scenario]:
    """`RowInsert.one_with`: a message with 0, 1 and 3 recipients (and one history row each),
    read back; and one whose detail row breaks a constraint, which leaves nothing behind."""
    messages, recipients = table_of(Message), table_of(Recipient)
    history = table_of(MessageStateEntry)
    parent, child, entry = RowInsert(messages), RowInsert(recipients), RowInsert(history)
    numbers = ["+12025550100", "+12025550101", "+12025550102"]

    async def setup(conn: UnitConnection) -> None:
        await RowInsert(table_of(User)).one(conn, {
            "login": "owner", "password_hash": "x", "created_at": NOW, "updated_at": NOW,
        })  # fmt: skip

    async def store(conn: UnitConnection) -> list[int]:
        keys = []
        for count in (0, 1, 3):
            rows = [
                {"position": i, "phone_number": n, "state": "Pending"}
                for i, n in enumerate(numbers[:count])
            ]
            keys.append(
                await parent.one_with(
                    conn,
                    _message(f"f{count}", NOW),
                    (
                        Details(child, "message_id", rows),
                        Details(entry, "message_id", [{"state": "Pending", "at": NOW}]),
                    ),
                )
            )
        return keys

    async def broken(conn: UnitConnection) -> str:
        twice = [{"state": "Pending", "at": NOW}] * 2  # the same (message, state) key
        await parent.one_with(conn, _message("broken", NOW), (Details(entry, "message_id", twice),))
        return "stored"

    async def look(conn: UnitConnection) -> list[Any]:
        stored_rows = await conn.execute(
            "SELECT m.ext_id, r.position, r.phone_number, r.state, r.error "
            "FROM messages m JOIN recipients r ON r.message_id = m.id ORDER BY m.id, r.position"
        )
        states = await conn.execute(
            "SELECT m.ext_id, h.state, h.at FROM messages m "
            "JOIN message_states h ON h.message_id = m.id ORDER BY m.id"
        )
        at = ColumnReader(history.c.at)
        return [
            [tuple(row) for row in stored_rows],
            [(ext_id, state, at(conn, when)) for ext_id, state, when in states],
        ]

    return [setup, store, look, broken, look]


def test_a_row_and_its_details_in_one_statement_give_the_same_on_both_engines(
    pg_settings: Settings, settings: Settings
) -> None:
    migrate.upgrade(settings)
    on_postgresql = asyncio.run(_on_postgresql(pg_settings, _families(), failing=True))
    on_sqlite = asyncio.run(_on_sqlite(settings, _families(), failing=True))
    assert on_postgresql == on_sqlite
    _, keys, before, broken, after = on_postgresql
    assert len(set(keys)) == 3
    assert before[0] == [
        ("f1", 0, "+12025550100", "Pending", None),
        ("f3", 0, "+12025550100", "Pending", None),
        ("f3", 1, "+12025550101", "Pending", None),
        ("f3", 2, "+12025550102", "Pending", None),
    ]
    assert before[1] == [(f"f{n}", "Pending", NOW) for n in (0, 1, 3)]
    assert broken == "refused" and after == before


# Two nodes at once: each transaction below is another node's, on its own connection.


async def _connect(settings: Settings) -> psycopg.AsyncConnection[Any]:
    arguments = connect_arguments(settings.resolved_database_url)
    return await psycopg.AsyncConnection.connect(**arguments, autocommit=True)


async def _prepare(settings: Settings, phones: int, messages: int) -> None:
    conn = await _connect(settings)
    async with conn, conn.transaction():
        unit = PostgresUnit(conn)
        await RowInsert(table_of(User)).one(unit, {
            "login": "owner", "password_hash": "x", "created_at": NOW, "updated_at": NOW,
        })  # fmt: skip
        await DEVICE_ROWS.many(unit, [{
            "id": f"phone{i}", "user_id": 1, "name": None, "token_hash": f"{i}" * 64,
            "push_token": None, "sim_cards": None, "app_version": None,
            "created_at": NOW, "updated_at": NOW, "last_seen": NOW,
        } for i in range(phones)])  # fmt: skip
        for i in range(messages):
            await stored.store_message(
                unit, _message(f"m{i}", NOW + timedelta(seconds=i)), NUMBERS, NOW
            )


def _phone(i: int) -> Phone:
    return Phone(f"phone{i}", 1, None)


LATER = NOW + timedelta(minutes=1)


async def _claims_at_once(settings: Settings) -> tuple[list[int], list[int]]:
    await _prepare(settings, phones=2, messages=4)
    first, second = await _connect(settings), await _connect(settings)
    async with first, second, first.transaction():
        mine = await routing.claim(PostgresUnit(first), _phone(0), 2, LATER, False)
        # The first claim holds its rows, uncommitted: the second passes over them.
        async with second.transaction():
            theirs = await asyncio.wait_for(
                routing.claim(PostgresUnit(second), _phone(1), 2, LATER, False), 30
            )
    return sorted(mine), sorted(theirs)


def test_two_nodes_claiming_at_once_never_take_the_same_message(pg_settings: Settings) -> None:
    mine, theirs = asyncio.run(_claims_at_once(pg_settings))
    assert len(mine) == len(theirs) == 2
    assert not set(mine) & set(theirs)


async def _pulls_of_one_phone_at_once(settings: Settings) -> list[int]:
    """The same phone pulls through two nodes at once, with room for 2 messages."""
    await _prepare(settings, phones=1, messages=5)
    first, second = await _connect(settings), await _connect(settings)
    async with first, second:
        await first.execute("BEGIN")
        one = await routing_service.pull_unit(PostgresUnit(first), _phone(0), False, 2, LATER)

        async def other() -> routing_service.Pull:
            async with second.transaction():
                return await routing_service.pull_unit(
                    PostgresUnit(second), _phone(0), False, 2, LATER
                )

        later = asyncio.create_task(other())
        await asyncio.sleep(0.2)  # room for the second pull to (wrongly) get ahead
        assert not later.done()  # it waits for the first pull's transaction
        await first.execute("COMMIT")
        two = await asyncio.wait_for(later, 30)
    return [one.claimed, two.claimed, len(two.items)]


def test_one_phones_pulls_on_two_nodes_respect_its_cap(pg_settings: Settings) -> None:
    first, second, held = asyncio.run(_pulls_of_one_phone_at_once(pg_settings))
    assert (first, second) == (2, 0)  # the second saw the first's claims, once committed
    assert held == 2


async def _reports_at_once(settings: Settings) -> tuple[str, list[str], list[int]]:
    """The app's repeated final snapshot of one message, applied at once on two nodes."""
    await _prepare(settings, phones=1, messages=1)
    setup = await _connect(settings)
    async with setup, setup.transaction():
        await routing.claim(PostgresUnit(setup), _phone(0), 1, LATER, False)

    def snapshot(state: ProcessingState) -> StateReport:
        reached = {ProcessingState.PROCESSED: NOW, state: NOW}
        return StateReport("m0", state, [RecipientReport(n, state, None) for n in NUMBERS], reached)

    first, second = await _connect(settings), await _connect(settings)
    async with first, second:
        await first.execute("BEGIN")
        once = await routing_service._apply(
            PostgresUnit(first), _phone(0), snapshot(ProcessingState.DELIVERED), LATER, True,
            routing_service.outbox.NO_WAIT,
        )  # fmt: skip

        async def other() -> routing_service.Reported:
            async with second.transaction():
                return await routing_service._apply(
                    PostgresUnit(second), _phone(0), snapshot(ProcessingState.DELIVERED),
                    LATER, True, routing_service.outbox.NO_WAIT,
                )  # fmt: skip

        later = asyncio.create_task(other())
        await asyncio.sleep(0.2)
        assert not later.done()  # it waits for the message the first one holds
        await first.execute("COMMIT")
        delivered = await asyncio.wait_for(later, 30)
        unit = PostgresUnit(first)
        found = await routing.reported_message(unit, _phone(0), "m0")
        assert found is not None
        history = sorted(await routing.history_states(unit, found[0]))
        states = [r.state for r in await routing.recipients_of(unit, found[0])]
    assert states == ["Delivered", "Delivered"]
    return found[1], history, [once.freed, delivered.freed]


def test_reports_of_one_message_on_two_nodes_take_turns(pg_settings: Settings) -> None:
    """The second waits for the first and then finds the message as the first left it: it
    changes nothing (had it read the message before, it would count the phone's room
    under its cap as freed a second time)."""
    state, history, freed = asyncio.run(_reports_at_once(pg_settings))
    assert state == "Delivered"
    assert history == ["Delivered", "Pending", "Processed"]
    assert freed == [1, 0]


def test_placeholders_become_psycopgs() -> None:
    assert placeholders("SELECT 1 WHERE a = ? AND b LIKE 'x%'") == (
        "SELECT 1 WHERE a = %s AND b LIKE 'x%%'"
    )


class _Recording(UnitConnection):
    """A unit connection that keeps the statements it runs."""

    dialect = POSTGRESQL

    def __init__(self, inner: UnitConnection) -> None:
        self.inner = inner
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        values = tuple(params)
        self.statements.append((sql, values))
        return await self.inner.execute(sql, values)


def test_a_claim_chooses_its_messages_once_whatever_the_plan(pg_settings: Settings) -> None:
    """The claim's choice (LIMIT, FOR UPDATE SKIP LOCKED) runs once, as an InitPlan before
    the UPDATE: were it planned as a join, a second run could choose other rows than the
    first and claim more than asked."""

    async def scenario() -> tuple[list[int], str]:
        await _prepare(pg_settings, phones=1, messages=5)
        conn = await _connect(pg_settings)
        async with conn, conn.transaction():
            recording = _Recording(PostgresUnit(conn))
            claimed = await routing.claim(recording, _phone(0), 2, LATER, False)
            ((sql, params),) = recording.statements
            plan = await PostgresUnit(conn).execute(f"EXPLAIN (COSTS OFF) {sql}", params)
            return claimed, "\n".join(row[0] for row in plan)

    claimed, plan = asyncio.run(scenario())
    assert len(claimed) == 2
    assert "InitPlan" in plan and "LockRows" in plan, plan
    assert "Join" not in plan, plan


def test_a_detail_too_long_for_its_column_is_refused_not_cut(pg_settings: Settings) -> None:
    """The one statement casts each value to its column's type without its length: a
    phone number longer than the column takes is refused, as a plain INSERT refuses it."""

    async def scenario() -> list[Any]:
        conn = await _connect(pg_settings)
        async with conn:
            await _prepare(pg_settings, phones=1, messages=0)
            with pytest.raises(psycopg.errors.StringDataRightTruncation):
                async with conn.transaction():
                    await stored.store_message(
                        PostgresUnit(conn), _message("long", NOW), ["+1" + "2" * 600], NOW
                    )
            cursor = await conn.execute("SELECT count(*) FROM messages")
            return await cursor.fetchall()

    assert asyncio.run(scenario()) == [(0,)]
