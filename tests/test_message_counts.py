"""X-Total-Count without counting (issue 17, goal 2): triggers on `messages` record each
change of a count, the worker folds them into `message_counts`, and every list without a
time range reads the counts. The counts must stay exact through every way a message is
stored, changed or deleted: sends, phone reports, cancels, expiry, release of a silent
phone's claims, deletion of a phone or of an account, retention, a migration of a database
that already had messages, and two folds at once."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import MetaData, Table

from smsgw.accounts import service as accounts
from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.engine import Database, DriverUnit, database_for
from smsgw.domain import clock
from smsgw.messages import repository as stored
from smsgw.messages import service as messages
from tests.conftest import CLOCK_START, Account, LiveServer, database_rows
from tests.test_phones import Api, eventually, phone

STATES = ["Pending", "Processed", "Sent", "Delivered", "Failed", "Cancelled", "Cancelling"]
T0 = CLOCK_START


def counted(settings: Settings, user_id: int, state: str | None, device: str | None) -> int:
    """COUNT(*) of the owner's messages with that state and phone (None: any)."""
    sql = "SELECT count(*) FROM messages WHERE user_id = ?"
    params: list[Any] = [user_id]
    if state is not None:
        sql, params = sql + " AND state = ?", [*params, state]
    if device is not None:
        sql, params = sql + " AND device_id = ?", [*params, device]
    return int(database_rows(settings, sql, params)[0][0])


def user_id_of(settings: Settings, login: str) -> int:
    return int(database_rows(settings, "SELECT id FROM users WHERE login = ?", [login])[0][0])


def devices_of(settings: Settings) -> list[str]:
    rows = database_rows(settings, "SELECT DISTINCT device_id FROM messages")
    return sorted(row[0] for row in rows if row[0] is not None)


async def totals_agree(api: Api, settings: Settings, login: str) -> bool:
    """Whether X-Total-Count equals COUNT(*) for every state and phone filter (and none)."""
    user_id = user_id_of(settings, login)
    for state, device in itertools.product([None, *STATES], [None, *devices_of(settings)]):
        params = {"limit": 1} | ({"state": state} if state else {})
        params |= {"deviceId": device} if device else {}
        response = await api.client.get("/messages", params=params)
        assert response.status_code == 200, response.text
        if int(response.headers["X-Total-Count"]) != counted(settings, user_id, state, device):
            return False
    return True


def unfolded(settings: Settings) -> int:
    return int(database_rows(settings, "SELECT count(*) FROM message_count_changes")[0][0])


#: A bound on a whole scenario, only so that a hung one ends: generous, as a busy machine
#: (parallel test processes beside other work) may take several times an idle one's ~25 s.
SCENARIO_SECONDS = 900


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), SCENARIO_SECONDS))


def test_the_total_is_exact_through_sends_reports_cancels_expiry_release_and_deletions(
    fleet_server: LiveServer,
) -> None:
    fleet = fleet_server
    settings = fleet.settings
    owner, other = fleet.create_user("owner"), fleet.create_user("other")

    async def scenario() -> None:
        api, bystander = Api(fleet, owner), Api(fleet, other)
        await bystander.send("someone else's")

        async def exact() -> None:
            # Checked when nothing moves: the HTTP answer and COUNT(*) read the same rows.
            assert await totals_agree(api, settings, owner.login)
            assert await totals_agree(bystander, settings, other.login)

        # Sent and delivered through a phone; one cancelled before any phone took it.
        sender = phone(fleet, owner)
        await sender.start()
        await eventually(lambda: _true(sender.sse_opens > 0))
        delivered = [await api.send(f"m{i}") for i in range(4)]
        for message_id in delivered:
            await api.reaches(message_id, "Delivered")
        await sender.stop()
        cancelled = await api.send("never mind")
        assert (await api.client.delete(f"/messages/{cancelled}")).json()["state"] == "Cancelled"
        await exact()

        # Expiry: validUntil passes (the server's clock is moved, not waited for).
        late = await api.send("too late", ttl=5)
        try:
            clock.set_clock(lambda: datetime.now(UTC) + timedelta(seconds=6))
            await api.reaches(late, "Failed")
        finally:
            clock.set_clock(lambda: datetime.now(UTC))
        await exact()

        # A phone takes three and dies: its claims go back to the queue (released), then to
        # another phone that holds them unsent; one sent to it there is cancelled (Cancelling).
        held = [await api.send(f"h{i}") for i in range(3)]
        dying = phone(fleet, owner, sse=False, pull_interval=1e6, paused=True)
        await dying.start()
        await eventually(lambda: _true(len(dying.messages) == 3))
        await dying.kill()
        # The holder pulls only when told to (no event stream, no timer): a pull of its own
        # between taking the pinned message and the cancel would report that message
        # Processed (a phone holding it unsent says Pending) and the cancel would be refused.
        holder = phone(fleet, owner, sse=False, pull_interval=1e6, paused=True)
        await holder.start()

        async def pulled_the_held() -> bool:
            await holder.pull()
            return set(held) <= set(holder.messages)

        await eventually(pulled_the_held)  # once the server has taken them back from `dying`
        holder_id = holder.credentials.id  # type: ignore[union-attr]
        await holder.pull()  # seen again: the holder reports them (Pending there: Processed)
        for message_id in held:
            await api.reaches(message_id, "Processed")
        pinned = await api.send("held", deviceId=holder_id)
        await holder.pull()
        assert pinned in holder.messages
        response = await api.client.delete(f"/messages/{pinned}")
        assert response.json().get("state") == "Cancelling", response.text
        await holder.pull()  # handed as Cancelling: the phone cancels it and says so
        await api.reaches(pinned, "Cancelled")
        await holder.kill()
        await exact()

        # The phone that holds them is deleted: its messages keep their state, with no phone.
        assert (await api.client.delete(f"/devices/{holder_id}")).status_code == 204
        assert counted(settings, user_id_of(settings, owner.login), None, holder_id) == 0
        await exact()

        # The other account goes, with its messages.
        db = database_for(settings)
        try:
            await accounts.delete_user(db, other.login)
        finally:
            await db.dispose()
        assert await totals_agree(api, settings, owner.login)
        await eventually(lambda: _true(unfolded(settings) == 0))  # the worker folded them
        await exact_owner(api, settings, owner)

    run(scenario)
    gone = database_rows(
        settings, "SELECT coalesce(sum(n), 0) FROM message_counts WHERE user_id NOT IN "
        "(SELECT id FROM users)"
    )  # fmt: skip
    assert int(gone[0][0]) == 0


async def exact_owner(api: Api, settings: Settings, owner: Account) -> None:
    assert await totals_agree(api, settings, owner.login)
    response = await api.client.get("/messages", params={"limit": 100})
    assert int(response.headers["X-Total-Count"]) == len(response.json()) == 10


async def _true(value: bool) -> bool:
    return value


# Below, the counts' own queries on a database changed through SQL, as any writer might.

MESSAGE = {
    "pinned": False, "text": "hi", "data": None, "port": None, "is_encrypted": False,
    "sim_number": None, "with_delivery_report": True, "priority": 0, "valid_until": None,
    "schedule_at": None,
}  # fmt: skip


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    migrate.upgrade(settings)
    return settings


async def _users(db: Database, count: int) -> list[int]:
    for i in range(count):
        await accounts.create_user(db, f"user{i}", "correct horse battery")
    async with db.read() as conn:
        rows = await conn.exec_driver_sql("SELECT id FROM users ORDER BY id")
        users = [row[0] for row in rows]
    async with db.write() as conn:
        for device_id, user_id in _device_rows(users):
            await conn.execute(stored.devices.insert().values(
                id=device_id, user_id=user_id, name="p", token_hash=device_id, created_at=T0,
                updated_at=T0, last_seen=T0,
            ))  # fmt: skip
    return users


def _device_rows(users: list[int]) -> list[tuple[str, int]]:
    return [(f"phone{u}{k}", u) for u in users for k in range(2)]


async def _table_as_migrated(db: Database) -> Table:
    """The messages table with the columns the database has now (an older revision's)."""
    async with db.read() as conn:
        return await conn.run_sync(lambda c: Table("messages", MetaData(), autoload_with=c))


async def _churn(
    db: Database,
    users: list[int],
    seed: int,
    rounds: int,
    *,
    fold: bool = True,
    table: Table = stored.messages,
) -> None:
    """Random inserts, changes of state, phone and owner, and deletes, folds in between."""
    chance = random.Random(seed)
    phones = _device_rows(users)
    serial = 0
    for _ in range(rounds):
        async with db.write() as conn:
            for _ in range(chance.randint(1, 30)):
                serial += 1
                user_id = chance.choice(users)
                owned = [d for d, u in phones if u == user_id]
                values = MESSAGE | {
                    "ext_id": f"s{seed}m{serial}", "user_id": user_id,
                    "device_id": chance.choice([None, *owned]), "state": chance.choice(STATES),
                    "created_at": T0, "updated_at": T0, "is_hashed": False,
                }  # fmt: skip
                await conn.execute(table.insert().values(values))
            keys = [row[0] for row in await conn.execute(table.select())]
            for key in chance.sample(keys, min(len(keys), chance.randint(0, 20))):
                row = (await conn.execute(table.select().where(table.c.id == key))).one()
                owned = [d for d, u in phones if u == row.user_id]
                change = chance.choice(["state", "device", "both", "same", "delete"])
                where = table.c.id == key
                if change == "delete":
                    await conn.execute(table.delete().where(where))
                    continue
                values = {"updated_at": T0}
                if change in ("state", "both"):
                    values["state"] = chance.choice(STATES)
                if change in ("device", "both"):
                    values["device_id"] = chance.choice([None, *owned])
                await conn.execute(table.update().where(where).values(values))
        if fold and chance.random() < 0.3:
            await messages.fold_counts(db)


async def _assert_exact(db: Database, users: list[int]) -> None:
    phones = [d for d, _ in _device_rows(users)]
    async with db.read() as conn:
        for user_id in users:
            for state, device in itertools.product([None, *STATES], [None, *phones]):
                where = stored.ListFilter(state=state, device_id=device)
                fast = await stored.count(DriverUnit(conn), user_id, where)
                slow = await stored.count(
                    DriverUnit(conn),
                    user_id,
                    stored.ListFilter(since=T0 - timedelta(days=1), state=state, device_id=device),
                )  # a time range: counted over the messages
                assert fast == slow, (user_id, state, device)
        by_state = await stored.count_by_state(conn)
        rows = await conn.exec_driver_sql("SELECT state, count(*) FROM messages GROUP BY state")
        assert {s: n for s, n in by_state.items() if n} == {row[0]: row[1] for row in rows}


def test_counts_stay_exact_through_any_change_folded_or_not(migrated: Settings) -> None:
    async def scenario() -> None:
        db = database_for(migrated)
        try:
            users = await _users(db, 3)
            await _churn(db, users, seed=7, rounds=40)
            await _assert_exact(db, users)
            assert await messages.fold_counts(db) >= 0
            async with db.read() as conn:
                assert not await stored.any_count_changes(conn)
            await _assert_exact(db, users)
            await _churn(db, users, seed=8, rounds=10)  # folded counts plus new changes
            await _assert_exact(db, users)
            await accounts.delete_user(db, "user1")  # its messages go by cascade
            await _assert_exact(db, [users[0], users[2]])
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_retention_keeps_the_counts_exact(migrated: Settings) -> None:
    async def scenario() -> None:
        db = database_for(migrated)
        try:
            users = await _users(db, 2)
            await _churn(db, users, seed=11, rounds=20)
            clock.set_clock(lambda: T0 + timedelta(days=40))
            try:
                assert await messages.prune(db, 30) > 0
            finally:
                clock.set_clock(lambda: datetime.now(UTC))
            await _assert_exact(db, users)
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_a_database_with_messages_is_counted_by_the_migration(settings: Settings) -> None:
    migrate.upgrade(settings, "0009")

    async def fill() -> list[int]:
        db = database_for(settings)
        try:
            users = await _users(db, 2)
            table = await _table_as_migrated(db)  # without the columns of later revisions
            await _churn(db, users, seed=3, rounds=10, fold=False, table=table)  # no counts yet
            return users
        finally:
            await db.dispose()

    users = asyncio.run(fill())
    migrate.upgrade(settings)

    async def check() -> None:
        db = database_for(settings)
        try:
            async with db.read() as conn:
                assert not await stored.any_count_changes(conn)
            await _assert_exact(db, users)
        finally:
            await db.dispose()

    asyncio.run(check())


def test_two_folds_at_once_count_each_change_once(migrated: Settings) -> None:
    async def scenario() -> None:
        first, second = database_for(migrated), database_for(migrated)
        try:
            users = await _users(first, 2)
            await _churn(first, users, seed=5, rounds=60)
            async with first.read() as conn:
                rows = await conn.exec_driver_sql("SELECT count(*) FROM message_count_changes")
                waiting = rows.scalar_one()
            folded = await asyncio.gather(
                messages.fold_counts(first, batch=50), messages.fold_counts(second, batch=50)
            )  # each changes batch is taken by one of them (SKIP LOCKED on PostgreSQL)
            assert sum(folded) == waiting
            await _assert_exact(first, users)
        finally:
            await first.dispose()
            await second.dispose()

    asyncio.run(scenario())


def test_the_counts_have_no_row_for_nothing_counted(migrated: Settings) -> None:
    """A list of an owner with no messages reads zero, not an error or a scan."""

    async def scenario() -> None:
        db = database_for(migrated)
        try:
            async with db.read() as conn:
                assert await stored.count(DriverUnit(conn), 1, stored.ListFilter()) == 0
                assert await stored.count(DriverUnit(conn), 1, stored.ListFilter(state="Sent")) == 0
                assert await stored.count_by_state(conn) == {}
        finally:
            await db.dispose()

    asyncio.run(scenario())
