"""`Database` on PostgreSQL (issue 16, under way): group commit over psycopg's pool, the
SQLAlchemy side through the psycopg dialect, and the services of a message's life on top of
both, on the test session's own PostgreSQL cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from smsgw.accounts import service as accounts
from smsgw.accountsettings import service as account_settings
from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.engine import Database, Unit, UnitConnection, database_for
from smsgw.db.postgres import (
    NAMED_LOCKS,
    PostgresDatabase,
    StaleSession,
    _SideBySide,
    connect_arguments,
    named_lock_keys,
)
from smsgw.devices import service as devices
from smsgw.domain import clock
from smsgw.domain.errors import Conflict, Unauthorized
from smsgw.domain.states import ProcessingState
from smsgw.events.hub import EventHub
from smsgw.inbox import repository as inbox_rows
from smsgw.messages import repository as message_rows
from smsgw.messages import service as messages
from smsgw.routing import repository as routing_rows
from smsgw.routing import service as routing
from smsgw.routing.repository import Phone
from smsgw.routing.service import RecipientReport, StateReport
from smsgw.tokens import repository as token_rows
from smsgw.tokens.service import TokenService
from smsgw.webhooks import hub, outbox
from smsgw.webhooks import repository as webhook_rows
from smsgw.webhooks import service as webhooks
from smsgw.webhooks.repository import Due
from smsgw.webhooks.schemas import WebhookIn
from smsgw.workers.webhooks import WebhookWorker
from tests import pgcluster
from tests.conftest import Account, create_account, database_rows, make_settings, running
from tests.pgcluster import Cluster
from tests.test_database import assert_only_the_failing_unit_is_lost, put
from tests.webhook_support import one_event

pytestmark = pytest.mark.one_engine("they choose their engines themselves")  # conftest.py

NUMBER = "+12025550100"
T = TypeVar("T")


@pytest.fixture
def pg_settings(pg_cluster: Cluster, tmp_path: Path) -> Settings:
    settings = make_settings(
        tmp_path / "pg", database_url=pg_cluster.create_database(), db_pool_size=3
    )
    migrate.upgrade(settings)
    return settings


def _keys(settings: Settings) -> set[str]:
    with psycopg.connect(**connect_arguments(settings.resolved_database_url)) as conn:
        return {row[0] for row in conn.execute("SELECT key FROM system_values")}


def test_database_for_picks_postgresql_for_its_url(pg_settings: Settings) -> None:
    db = database_for(pg_settings)
    assert isinstance(db, PostgresDatabase)
    assert db.engine.pool.size() == 3  # type: ignore[attr-defined]
    asyncio.run(db.dispose())


def test_a_failing_unit_of_a_batch_is_rolled_back_alone(pg_settings: Settings) -> None:
    """As on SQLite (tests/test_database.py)."""
    assert_only_the_failing_unit_is_lost(database_for(pg_settings), lambda: _keys(pg_settings))


def in_one_batch(settings: Settings, units: list[Unit[str]]) -> list[object]:
    """What each unit gives (or raises), queued at once: they go in one batch."""

    async def scenario() -> list[object]:
        db = database_for(settings)
        try:
            return await asyncio.gather(*(db.write_unit(u) for u in units), return_exceptions=True)
        finally:
            await db.dispose()

    return asyncio.run(scenario())


def test_a_duplicate_key_fails_its_unit_only(pg_settings: Settings) -> None:
    """A unit that breaks a constraint aborts PostgreSQL's transaction for every statement
    after it: the batch runs again with a SAVEPOINT around each unit."""
    first, other, again = in_one_batch(pg_settings, [put("same"), put("other"), put("same")])
    assert (first, other) == ("same", "other")
    assert isinstance(again, psycopg.errors.UniqueViolation)
    assert _keys(pg_settings) == {"same", "other"}


def put_many(key: str) -> Unit[str]:
    """A unit that only queues its row (`executemany`): in the batch's pipeline, a broken
    constraint shows at the next statement awaited, in another unit or at the COMMIT."""

    async def work(conn: UnitConnection) -> str:
        await conn.executemany("INSERT INTO system_values (key, value) VALUES (?, 'v')", [(key,)])
        return key

    return work


def test_a_queued_row_that_breaks_a_constraint_fails_its_own_unit_only(
    pg_settings: Settings,
) -> None:
    """The third unit's duplicate shows while the fourth unit runs its statement: the batch
    runs again apart, and only the third is lost, with its own error."""
    units = [put_many("same"), put("one"), put_many("same"), put("two"), put_many("end")]
    first, one, again, two, end = in_one_batch(pg_settings, units)
    assert (first, one, two, end) == ("same", "one", "two", "end")
    assert isinstance(again, psycopg.errors.UniqueViolation)
    assert _keys(pg_settings) == {"same", "one", "two", "end"}


def test_a_queued_row_that_breaks_a_constraint_last_fails_at_the_commit_alone(
    pg_settings: Settings,
) -> None:
    units = [put("same"), put_many("other"), put_many("same")]
    first, other, again = in_one_batch(pg_settings, units)
    assert (first, other) == ("same", "other")
    assert isinstance(again, psycopg.errors.UniqueViolation)
    assert _keys(pg_settings) == {"same", "other"}


def counted(key: str) -> Unit[int]:
    """Stores its key, then counts the keys stored: one after the other, each unit sees
    those before it; side by side, all of them."""

    async def work(conn: UnitConnection) -> int:
        await conn.execute("INSERT INTO system_values (key, value) VALUES (?, 'v')", (key,))
        found = await conn.execute("SELECT count(*) FROM system_values WHERE key LIKE 'k%'")
        return int(found.fetchone()[0])

    return work


class Syncs:
    """How many times psycopg's pipelines synced (a round trip each) while it is entered."""

    def __init__(self) -> None:
        self.count = 0
        self._sync = psycopg.AsyncPipeline.sync

    def __enter__(self) -> Syncs:
        sync = self._sync

        async def counting(pipeline: psycopg.AsyncPipeline) -> None:
            self.count += 1
            await sync(pipeline)

        psycopg.AsyncPipeline.sync = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        psycopg.AsyncPipeline.sync = self._sync  # type: ignore[method-assign]


def in_one_interleaved_batch(
    settings: Settings, units: list[tuple[Unit[Any], bool]]
) -> tuple[list[object], int]:
    """`in_one_batch` with each unit interleaved or not; and how many times the pipeline
    synced before the COMMIT."""

    async def scenario() -> list[object]:
        db = database_for(settings)
        try:
            queued = (db.write_unit(unit, interleaved=side) for unit, side in units)
            # Generous: a unit left waiting for a round that never comes would hang here,
            # and its batch with it (disposing waits for the batch: given up on too).
            done = asyncio.gather(*queued, return_exceptions=True)
            return await asyncio.wait_for(done, timeout=60)
        finally:
            await asyncio.wait_for(db.dispose(), timeout=60)

    with Syncs() as syncs:
        return asyncio.run(scenario()), syncs.count


def test_interleaved_units_share_their_round_trips(pg_settings: Settings) -> None:
    alone, syncs_alone = in_one_interleaved_batch(
        pg_settings, [(counted(f"k{i}"), False) for i in range(4)]
    )
    assert (alone, syncs_alone) == ([1, 2, 3, 4], 8)  # a round trip per statement
    side, syncs_side = in_one_interleaved_batch(
        pg_settings, [(counted(f"k{i}"), True) for i in range(4, 8)]
    )
    assert (side, syncs_side) == ([8, 8, 8, 8], 2)  # the inserts together, then the counts


def test_units_not_interleaved_keep_their_place_between_interleaved_ones(
    pg_settings: Settings,
) -> None:
    units = [(counted("k1"), True), (counted("k2"), True), (counted("k3"), False)]
    units += [(counted("k4"), True), (counted("k5"), True)]
    done, syncs = in_one_interleaved_batch(pg_settings, units)
    assert done == [2, 2, 3, 5, 5]
    assert syncs == 2 + 2 + 2


def test_an_interleaved_unit_that_raises_is_rolled_back_alone(pg_settings: Settings) -> None:
    units = [(put("a"), True), (put("b", fail=True), True), (put("c"), True), (put("d"), False)]
    a, b, c, d = in_one_interleaved_batch(pg_settings, units)[0]
    assert (a, c, d) == ("a", "c", "d")
    assert isinstance(b, ValueError) and str(b) == "unit b fails"
    assert _keys(pg_settings) == {"a", "c", "d"}


def test_interleaved_units_that_break_a_constraint_lose_only_the_later_one(
    pg_settings: Settings,
) -> None:
    """Side by side, two units may both find a key free: the constraint refuses the second,
    in a round or at the COMMIT (a queued row), and the batch runs again unit by unit."""
    units = [(put("same"), True), (put_many("queued"), True), (put("same"), True)]
    units += [(put_many("queued"), True), (put("other"), True)]
    first, queued, again, queued_again, other = in_one_interleaved_batch(pg_settings, units)[0]
    assert (first, queued, other) == ("same", "queued", "other")
    assert isinstance(again, psycopg.errors.UniqueViolation)
    assert isinstance(queued_again, psycopg.errors.UniqueViolation)
    assert _keys(pg_settings) == {"same", "queued", "other"}


def put_and_clean_up(key: str) -> Unit[str]:
    """Inserts its key; then, however it ends, one more statement (a unit may do that)."""

    async def work(conn: UnitConnection) -> str:
        try:
            await conn.execute("INSERT INTO system_values (key, value) VALUES (?, 'v')", (key,))
            return key
        finally:
            await conn.execute("SELECT 1")

    return work


async def fails_at_once(conn: UnitConnection) -> str:
    raise ValueError("unit b fails")


def test_a_failing_interleaved_unit_does_not_leave_the_others_waiting(
    pg_settings: Settings,
) -> None:
    """When one unit fails while the others await their first round, their statements are
    cancelled, and the statement of the clean-up they then do is refused at once: nothing
    waits for a round that never comes."""
    units = [(put_and_clean_up("a"), True), (fails_at_once, True)]
    units += [(put_and_clean_up("c"), True)]
    a, b, c = in_one_interleaved_batch(pg_settings, units)[0]
    assert (a, c) == ("a", "c")  # run again apart, each unit in its SAVEPOINT
    assert isinstance(b, ValueError)
    assert _keys(pg_settings) == {"a", "c"}


def test_messages_of_one_id_sent_in_one_batch_are_stored_once(
    pg_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sending is an interleaved unit: two sends of one id side by side both find the id
    free (one round of the id checks, one of the inserts, which fails), and the constraint
    keeps the second out (409) once the batch runs again apart; the others are stored."""
    rounds = 0
    answer = _SideBySide._answer

    async def counted(side: _SideBySide) -> None:
        # Rounds, not syncs: the insert's error may come back while the round's later
        # statements are being sent, before its sync, when PostgreSQL is quick enough.
        nonlocal rounds
        rounds += 1
        await answer(side)

    async def scenario() -> list[object]:
        db = database_for(pg_settings)
        try:
            await accounts.create_user(db, "owner", "correct horse battery")
            async with db.read() as conn:
                user_id = (await conn.exec_driver_sql("SELECT id FROM users")).scalar_one()
            ids = ["one", "same", "two", "same", "three"]
            commands = [messages.SendCommand([NUMBER], text="hi", ext_id=i) for i in ids]
            monkeypatch.setattr(_SideBySide, "_answer", counted)
            sends = (messages.send(db, None, user_id, command) for command in commands)
            return await asyncio.gather(*sends, return_exceptions=True)
        finally:
            await db.dispose()

    one, same, two, again, three = asyncio.run(scenario())
    assert rounds == 2
    assert isinstance(again, Conflict)
    stored = [one, same, two, three]
    assert [m.id for m in stored] == ["one", "same", "two", "three"]  # type: ignore[attr-defined]
    with psycopg.connect(**connect_arguments(pg_settings.resolved_database_url)) as conn:
        rows = conn.execute("SELECT ext_id, count(*) FROM messages GROUP BY ext_id").fetchall()
    assert sorted(rows) == [("one", 1), ("same", 1), ("three", 1), ("two", 1)]


async def _owner_and_phone(db: Database) -> tuple[int, devices.Registration]:
    """An account and a phone registered to it: the account's id and the registration."""
    await accounts.create_user(db, "owner", "correct horse battery")
    async with db.read() as conn:
        user_id = (await conn.exec_driver_sql("SELECT id FROM users")).scalar_one()
    return user_id, await devices.register(db, user_id, "owner", "phone", None, None)


async def _a_message_s_life(settings: Settings) -> tuple[str, list[str], str]:
    db = database_for(settings)
    try:
        user_id, device = await _owner_and_phone(db)
        auth = await devices.authenticate(db, device.token)  # a unit on the loop
        assert auth is not None and auth.device_id == device.device_id
        phone = Phone(device.device_id, user_id, None)
        sent = await messages.send(db, None, user_id, messages.SendCommand([NUMBER], text="hi"))
        pulled = await routing.pull(db, phone, newest_first=False, cap=10)
        assert [p.record.id for p in pulled.items] == [sent.id]
        delivered = _report_of(sent, ProcessingState.DELIVERED)
        reported = await routing.report(db, phone, [delivered])
        assert reported.freed == 1
        record = await messages.get(db, user_id, sent.id)
        return record.state, sorted(record.states), record.recipients[0].state
    finally:
        await db.dispose()


def test_a_message_is_sent_pulled_and_delivered_on_postgresql(pg_settings: Settings) -> None:
    state, history, recipient = asyncio.run(_a_message_s_life(pg_settings))
    assert (state, recipient) == ("Delivered", "Delivered")
    assert history == ["Delivered", "Pending"]  # the states the report named, and the first


# Two nodes' batches and the locks their units name (`write_unit`'s `locks`).


async def _until(
    conn: psycopg.AsyncConnection[Any], query: str, params: tuple[object, ...] = ()
) -> None:
    """Until `query` (of one boolean) is true; waiting on the condition, however slow the
    machine."""
    deadline = time.monotonic() + 60
    while not (await (await conn.execute(query, params)).fetchone())[0]:  # type: ignore[index]
        assert time.monotonic() < deadline, f"never: {query}"
        await asyncio.sleep(0.02)


async def _until_a_session_waits(settings: Settings, named: bool = False) -> None:
    """Until a session of this database waits for a lock (with `named`, one of those a batch
    takes on its units' names); waiting on the condition, however slow the machine."""
    query = (
        "SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE NOT l.granted AND a.datname = current_database()"
    )
    if named:
        query += f" AND l.locktype = 'advisory' AND l.classid = {NAMED_LOCKS}"
    arguments = connect_arguments(settings.resolved_database_url)
    async with await psycopg.AsyncConnection.connect(**arguments, autocommit=True) as conn:
        await _until(conn, query)


@asynccontextmanager
async def _two_nodes(settings: Settings) -> AsyncIterator[tuple[Database, Database]]:
    """Two handles on the database, as two nodes' processes; disposed of at the end."""
    one, two = database_for(settings), database_for(settings)
    try:
        yield one, two
    finally:
        await one.dispose()
        await two.dispose()


@asynccontextmanager
async def _batch_held(
    db: Database, first: Unit[object], locks: list[str] | None = None
) -> AsyncIterator[None]:
    """A batch of `db` whose unit has run `first` and then waits, holding what its batch
    and `first` locked, for the block's length; released whatever the block raises (the
    databases' disposal would wait for it)."""
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold(conn: UnitConnection) -> None:
        await first(conn)
        holding.set()
        await release.wait()

    held = asyncio.create_task(db.write_unit(hold, locks=locks or []))
    try:
        await asyncio.wait_for(holding.wait(), 60)
        yield
    finally:
        release.set()
        await asyncio.wait_for(held, 60)


async def _crossing_batches(settings: Settings, named: bool) -> tuple[list[str], list[object]]:
    """Node one's unit locks row a, then, once node two's batch waits, row b; node two's
    unit locks b, then a: the two transactions of a textbook deadlock. What ran (a unit
    run again shows twice) and what each gave."""
    ran: list[str] = []
    one_holds_a = asyncio.Event()

    def locking(name: str, first: str, then: str) -> Unit[str]:
        async def work(conn: UnitConnection) -> str:
            ran.append(name)
            lock = "SELECT key FROM system_values WHERE key = ? FOR UPDATE"
            await conn.execute(lock, (first,))
            if name == "one" and not one_holds_a.is_set():  # (not when run again)
                one_holds_a.set()
                await _until_a_session_waits(settings)
            await conn.execute(lock, (then,))
            return name

        return work

    async with _two_nodes(settings) as (one, two):
        await asyncio.gather(one.write_unit(put("a")), one.write_unit(put("b")))
        first = asyncio.create_task(
            one.write_unit(locking("one", "a", "b"), locks=["a", "b"] if named else [])
        )
        await asyncio.wait_for(one_holds_a.wait(), 60)
        second = two.write_unit(locking("two", "b", "a"), locks=["b", "a"] if named else [])
        done = await asyncio.gather(first, second, return_exceptions=True)
        return ran, done


def test_batches_on_two_nodes_take_the_locks_their_units_name_in_one_order(
    pg_settings: Settings,
) -> None:
    """Named, the locks are taken before any unit runs, every batch in the same order: node
    two's batch waits for node one's to end before its unit begins, and each unit runs
    once, with no deadlock for PostgreSQL to break."""
    ran, done = asyncio.run(_crossing_batches(pg_settings, named=True))
    assert ran == ["one", "two"]
    assert done == ["one", "two"]


def test_without_names_the_same_batches_deadlock_and_one_runs_again(
    pg_settings: Settings,
) -> None:
    """What the names prevent, with the same units: PostgreSQL breaks the deadlock after
    its deadlock_timeout (1 s) by failing one batch (node two's, as a rule: it has waited
    longer), which runs again unit by unit; and that run may meet the other batch in a
    deadlock once more (on a busy machine both units then ran twice, or one three times:
    `_unit_by_unit`)."""
    ran, done = asyncio.run(_crossing_batches(pg_settings, named=False))
    assert done == ["one", "two"]  # nothing lost...
    assert len(ran) > 2 and set(ran) == {"one", "two"}  # ...but a unit ran again


def test_a_unit_that_meets_a_deadlock_again_on_its_own_runs_once_more(
    pg_settings: Settings,
) -> None:
    """A unit whose batch failed runs again on its own; when that run meets a deadlock too,
    it runs once more, in a new transaction, rather than fail (a full suite beside busy
    loops saw a unit fail so)."""
    runs, _, y, _ = asyncio.run(_deadlocked(pg_settings, deadlocks=2))
    assert (runs, y) == (3, "done")


async def _deadlocked(
    settings: Settings, deadlocks: int, cut: bool = False, x: str = ""
) -> tuple[int, object, object, int]:
    """A unit y of node one meets a deadlock with another session in its first `deadlocks`
    runs (its batch's, then its own after the batch failed), as the loser of a deadlock can
    meet the winner again on a busy machine: the other session locks b, then a, each round,
    with a deadlock_timeout of a minute, so PostgreSQL fails y's side each time. With `cut`,
    the other session then cuts y's connection while y waits in its next run. With `x`
    ("first" or "after"), a unit x that inserts a row runs in y's batch, before or after y.
    How many times y ran, what x and y each gave, and how many rows x has."""
    runs: list[int] = []
    backend: list[int] = []
    peer_holds_b = [asyncio.Event() for _ in range(deadlocks)]
    unit_holds_a = [asyncio.Event() for _ in range(deadlocks)]
    waits, cut_now = asyncio.Event(), asyncio.Event()
    lock = "SELECT key FROM system_values WHERE key = ? FOR UPDATE"

    async def y(conn: UnitConnection) -> str:
        runs.append(1)
        backend[:] = [(await conn.execute("SELECT pg_backend_pid()")).fetchone()[0]]
        if len(runs) <= deadlocks:
            round_ = len(runs) - 1
            await asyncio.wait_for(peer_holds_b[round_].wait(), 60)
            await conn.execute(lock, ("a",))
            unit_holds_a[round_].set()
            await _until_a_session_waits(settings)  # the other session, for a
        elif cut and len(runs) == deadlocks + 1:
            waits.set()
            await asyncio.wait_for(cut_now.wait(), 60)
        await conn.execute(lock, ("a",))
        await conn.execute(lock, ("b",))
        return "done"

    async def peer() -> None:
        arguments = connect_arguments(settings.resolved_database_url)
        async with await psycopg.AsyncConnection.connect(**arguments, autocommit=True) as conn:
            await conn.execute("SET deadlock_timeout = '60s'")
            for round_ in range(deadlocks):
                async with conn.transaction():
                    await conn.execute("SELECT key FROM system_values WHERE key = 'b' FOR UPDATE")
                    peer_holds_b[round_].set()
                    await asyncio.wait_for(unit_holds_a[round_].wait(), 60)
                    await conn.execute("SELECT key FROM system_values WHERE key = 'a' FOR UPDATE")
            if cut:
                await asyncio.wait_for(waits.wait(), 60)
                await conn.execute("SELECT pg_terminate_backend(%s)", (backend[0],))
                gone = "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = %s"
                await _until(conn, gone, (backend[0],))
                cut_now.set()

    async with _two_nodes(settings) as (one, _):
        await asyncio.gather(one.write_unit(put("a")), one.write_unit(put("b")))
        other = asyncio.create_task(peer())
        x_unit = put("x")
        units = {"": [y], "first": [x_unit, y], "after": [y, x_unit]}[x]
        done = await asyncio.gather(*map(one.write_unit, units), return_exceptions=True)
        await asyncio.wait_for(other, 60)
        gave = dict(zip(units, done, strict=True))
        rows = database_rows(settings, "SELECT count(*) FROM system_values WHERE key = 'x'")
        return len(runs), gave.get(x_unit), gave[y], rows[0][0]


def test_a_later_run_that_fails_as_a_whole_fails_only_the_units_it_ran(
    pg_settings: Settings,
) -> None:
    """A unit committed beside a deadlocked one keeps its outcome when the deadlocked one's
    next run fails as a whole (here its connection cut): told it failed, its caller would
    send it again."""
    _, x, y, rows = asyncio.run(_deadlocked(pg_settings, deadlocks=2, cut=True, x="after"))
    assert (x, rows) == ("x", 1)
    assert isinstance(y, (StaleSession, psycopg.OperationalError)), y


def test_a_connection_lost_while_a_failed_batch_runs_again_runs_the_batch_once_more(
    pg_settings: Settings,
) -> None:
    """A batch run again unit by unit whose connection is lost after a unit succeeded in it
    runs again on another connection: psycopg leaves the transaction block without a word
    then, and without its COMMIT, so the unit's success had been reported while nothing of
    it was kept."""
    _, x, y, rows = asyncio.run(_deadlocked(pg_settings, deadlocks=1, cut=True, x="first"))
    assert (x, y, rows) == ("x", "done", 1)


def test_named_lock_keys_are_int4s_sorted_and_the_same_on_every_node() -> None:
    """Every node must turn a name into the same key (crc32, not Python's per-process
    hash), and a batch takes its keys in sorted order."""
    keys = named_lock_keys(["phone abc", "message 1 m-1", "phone abc", "message 1 m-2"])
    assert keys == sorted(keys) and len(keys) == 3
    assert all(-(2**31) <= key < 2**31 for key in keys)
    assert named_lock_keys(["message 1 m-1"]) == [1316522828]
    assert named_lock_keys(["phone abc"]) == [-517869184]


async def _waits_for_a_batch_naming(
    settings: Settings, one: Database, name: str, waiting: Awaitable[T]
) -> T:
    """What `waiting` (on node two) gives, once it was seen waiting, before it ran, for a
    batch of node one that holds a lock on `name`."""

    async def answered(conn: UnitConnection) -> object:
        # A statement answered: the batch's locks, sent before it in the pipeline, are
        # held now (until then they may not even have left the client).
        return await conn.execute("SELECT 1")

    async with _batch_held(one, answered, [name]):
        other = asyncio.ensure_future(waiting)
        await _until_a_session_waits(settings, named=True)
        assert not other.done()
    return await asyncio.wait_for(other, 60)


async def _reports_and_pulls_wait_for_their_names(
    settings: Settings,
) -> tuple[routing.Reported, routing.Pull]:
    """A message pulled by a phone; then node two's report of it, and its pull, each while
    node one's batch holds the name of the message, then of the phone."""
    async with _two_nodes(settings) as (one, two):
        user_id, device = await _owner_and_phone(one)
        phone = Phone(device.device_id, user_id, None)
        sent = await messages.send(one, None, user_id, messages.SendCommand([NUMBER], text="x"))
        assert (await routing.pull(one, phone, newest_first=False, cap=10)).claimed == 1
        delivered = _report_of(sent, ProcessingState.DELIVERED)
        message, of_phone = (
            message_rows.message_lock(user_id, sent.id),
            routing.phone_lock(phone.device_id),
        )
        reported = await _waits_for_a_batch_naming(
            settings, one, message, routing.report(two, phone, [delivered])
        )
        pulled = await _waits_for_a_batch_naming(
            settings, one, of_phone, routing.pull(two, phone, False, 10)
        )
        own_id = message_rows.message_lock(user_id, "own-id")
        command = messages.SendCommand([NUMBER], text="y", ext_id="own-id")
        stored = await _waits_for_a_batch_naming(
            settings, one, own_id, messages.send(two, None, user_id, command)
        )
        assert stored.id == "own-id"
        return reported, pulled


def test_reports_pulls_and_sends_with_an_id_name_what_they_lock(
    pg_settings: Settings,
) -> None:
    reported, pulled = asyncio.run(_reports_and_pulls_wait_for_their_names(pg_settings))
    assert reported.freed == 1
    assert pulled.claimed == 0 and pulled.items == []


async def _pinned_send_while_its_phone_pulls(settings: Settings) -> str:
    """While node one's batch holds a phone's row as a pull does, node two stores a message
    pinned to that phone (its foreign key checks the phone's row): what it stored."""
    async with _two_nodes(settings) as (one, two):
        user_id, device = await _owner_and_phone(one)

        async def as_a_pull(conn: UnitConnection) -> None:
            await routing_rows.lock_phone(conn, device.device_id)

        async with _batch_held(one, as_a_pull):
            command = messages.SendCommand([NUMBER], text="z", device_id=device.device_id)
            sent = await asyncio.wait_for(messages.send(two, None, user_id, command), 60)
        return sent.id


def test_a_send_pinned_to_a_phone_does_not_wait_for_its_pull(pg_settings: Settings) -> None:
    """A pull's lock on its phone (FOR NO KEY UPDATE) lets the foreign key check of a
    message pinned to the phone through; with FOR UPDATE, it waited for the pull's batch,
    and two nodes' batches, each with one phone's pull and a send pinned to the other
    phone, deadlocked."""
    assert asyncio.run(_pinned_send_while_its_phone_pulls(pg_settings))


async def _waited_before(settings: Settings, task: asyncio.Future[Any]) -> bool:
    """Whether a session of this database was seen waiting for a lock before `task` was
    done (`_wait_seen_before`)."""
    return await _wait_seen_before(settings, task) is not None


async def _takes_on_two_nodes(settings: Settings) -> tuple[list[int], list[int], bool, list[Any]]:
    """Four webhook deliveries due; node one's take holds the two oldest (its batch open)
    while node two's worker takes what it can. What node one took, what node two took,
    whether node two's take was seen waiting for node one's batch, and every delivery's
    attempts (its row's count, and its attempt rows) once both batches have ended."""
    async with _two_nodes(settings) as (one, two):
        await one_event(one, settings, "http://127.0.0.1:9/hook")
        [(user_id,)] = database_rows(settings, "SELECT id FROM users")
        for n in range(2, 5):
            async with one.write() as conn:
                await outbox.record(conn, user_id, None, "sms:sent", f"k{n}", {"n": n})
        by_one: list[int] = []

        async def take_two(conn: UnitConnection) -> None:  # as a worker's take does
            now = clock.now()
            lease = now + timedelta(minutes=5)
            for item in await webhook_rows.due_unit(conn, now, 2, taking=True):
                assert await webhook_rows.take_unit(conn, item, lease, now)
                by_one.append(item.pk)

        worker = WebhookWorker(settings, two)
        taking: asyncio.Future[list[tuple[Due, int, str]]] | None = None
        try:
            async with _batch_held(one, take_two):
                taking = asyncio.ensure_future(worker.take())
                waited = await _waited_before(settings, taking)
            # node one's batch has ended: node two's take ends too, if it waited
            by_two = [item.pk for item, _, _ in await asyncio.wait_for(taking, 60)]
        finally:
            if taking is not None and not taking.done():
                taking.cancel()
                await asyncio.gather(taking, return_exceptions=True)
            await worker.close()
        attempts = database_rows(
            settings,
            "SELECT d.id, d.attempts, count(a.id) FROM webhook_deliveries d"
            " LEFT JOIN webhook_attempts a ON a.delivery_pk = d.id GROUP BY d.id ORDER BY d.id",
        )
        return by_one, by_two, waited, attempts


def test_a_webhook_take_passes_over_deliveries_another_node_is_taking(
    pg_settings: Settings,
) -> None:
    """While node one's take holds the two oldest deliveries due (its batch still open),
    node two's take does not wait for it: it takes the two others (FOR UPDATE ... SKIP
    LOCKED), and no delivery is taken twice. (Node one's two have no attempt row: its
    take here is the repository's, without one.)"""
    by_one, by_two, waited, attempts = asyncio.run(_takes_on_two_nodes(pg_settings))
    assert not waited
    assert len(by_one) == 2 and len(by_two) == 2 and not set(by_one) & set(by_two)
    assert sorted(by_one + by_two) == [pk for pk, _, _ in attempts]
    assert [(pk, tries) for pk, tries, _ in attempts] == [(pk, 1) for pk, _, _ in attempts]
    assert {pk: rows for pk, _, rows in attempts} == {
        pk: 1 if pk in by_two else 0 for pk, _, _ in attempts
    }


def test_without_skip_locked_a_webhook_take_waits_for_another_node_s(
    pg_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: with FOR UPDATE alone, node two's take waits for node one's batch (it
    takes the two others only once that batch has ended); still none taken twice."""
    monkeypatch.setattr(webhook_rows, "_DUE_TAKEN", webhook_rows._DUE + " FOR UPDATE OF d")
    by_one, by_two, waited, _ = asyncio.run(_takes_on_two_nodes(pg_settings))
    assert waited
    assert len(by_one) == 2 and len(by_two) == 2 and not set(by_one) & set(by_two)


# A phone's post to the hub taken by two nodes at once (a retry behind a balancer).


async def _wait_seen_before(settings: Settings, task: asyncio.Future[Any]) -> str | None:
    """What a session of this database was first seen waiting for before `task` was done:
    "named" (a lock a batch takes on its units' names) or the kind of lock (`pg_locks`'
    locktype: "transactionid" for another transaction's row); None when `task` was done
    first (waiting on the two conditions, however slow the machine)."""
    query = (
        "SELECT l.locktype, l.classid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE NOT l.granted AND a.datname = current_database()"
    )
    arguments = connect_arguments(settings.resolved_database_url)
    async with await psycopg.AsyncConnection.connect(**arguments, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while not task.done():
            found = await (await conn.execute(query)).fetchone()
            if found is not None:
                kind, of_class = found
                return "named" if (kind, of_class) == ("advisory", NAMED_LOCKS) else str(kind)
            assert time.monotonic() < deadline, "neither done nor waiting"
            await asyncio.sleep(0.02)
    return None


@asynccontextmanager
async def _taken_in_a_held_batch(
    db: Database, taking: Awaitable[T]
) -> AsyncIterator[asyncio.Future[T]]:
    """`taking` (a call that queues one unit of `db`: `hub.accept`) run in a batch whose
    next unit then waits, so that the batch holds what it locked and wrote, uncommitted,
    for the block's length; its outcome, once the block is over. Released whatever the
    block raises."""
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold(conn: UnitConnection) -> None:
        await conn.execute("SELECT 1")  # what the batch's units sent before is answered
        holding.set()
        await release.wait()

    taken = asyncio.ensure_future(taking)  # queued first: both join the flusher's first batch
    held = asyncio.ensure_future(db.write_unit(hold))
    try:
        await asyncio.wait_for(holding.wait(), 60)
        yield taken
    finally:
        release.set()
        await asyncio.wait_for(asyncio.gather(taken, held, return_exceptions=True), 60)


async def _beside_a_held_batch(
    settings: Settings,
    db: Database,
    taking: Awaitable[Any],
    meanwhile: Callable[[], Awaitable[Any]],
) -> tuple[str | None, list[object]]:
    """`taking` in a batch of `db` held open (`_taken_in_a_held_batch`), and meanwhile
    `meanwhile()` (another node's call): what that was seen waiting for before it was done
    (`_wait_seen_before`), and what each gave (or raised), once the batch is released."""
    second: asyncio.Future[Any] | None = None
    try:
        async with _taken_in_a_held_batch(db, taking) as first:
            second = asyncio.ensure_future(meanwhile())
            waited = await _wait_seen_before(settings, second)
        done = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 60)
    finally:
        if second is not None and not second.done():
            second.cancel()
            await asyncio.gather(second, return_exceptions=True)
    return waited, done


def _report_of(sent: messages.MessageRecord, state: ProcessingState) -> StateReport:
    """A phone's report of the message `sent` (to NUMBER) in `state`, as of its creation."""
    return StateReport(
        sent.id, state, [RecipientReport(NUMBER, state, None)], {state: sent.created_at}
    )


def _post(device_id: str, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"id": "post-1", "webhookId": "smsgw-" + event.replace(":", "-"), "event": event,
            "deviceId": device_id, "payload": payload}  # fmt: skip


SMS_POST = {"messageId": "in-1", "message": "hello", "phoneNumber": NUMBER,
            "receivedAt": "2026-03-01T12:00:00.000+00:00"}  # fmt: skip


async def _one_post_through_two_nodes(
    settings: Settings, event: str, payload: dict[str, Any]
) -> tuple[str | None, list[object], list[Any]]:
    """A phone's post (of `event`, to which the owner has a webhook) taken by node one in a
    batch held open, and meanwhile by node two: what node two was seen waiting for before
    it was done (`_wait_seen_before`); what each node's `accept` gave; and the rows then in
    the inbox and the outbox (inbox, events, deliveries)."""
    async with _two_nodes(settings) as (one, two):
        user_id, device = await _owner_and_phone(one)
        hook = WebhookIn(id="in", url="http://127.0.0.1:9/hook", event=event)
        await webhooks.register(one, user_id, hook, allow_private=True)
        body = _post(device.device_id, event, payload)
        waited, done = await _beside_a_held_batch(
            settings,
            one,
            hub.accept(one, user_id, device.device_id, body),
            lambda: hub.accept(two, user_id, device.device_id, body),
        )
        rows = database_rows(
            settings,
            "SELECT (SELECT count(*) FROM inbox), (SELECT count(*) FROM webhook_events),"
            " (SELECT count(*) FROM webhook_deliveries)",
        )
        return waited, done, rows


def test_two_nodes_taking_one_received_sms_at_once_store_it_once(pg_settings: Settings) -> None:
    """The post names the message it carries (`hub.accept`'s locks): node two's batch waits
    for node one's, then finds the message stored and stores nothing; neither fails, and
    the message is in the inbox and the outbox once."""
    waited, done, rows = asyncio.run(
        _one_post_through_two_nodes(pg_settings, "sms:received", SMS_POST)
    )
    assert done == [None, None]
    assert rows == [(1, 1, 1)]
    assert waited == "named"


def test_without_the_names_two_nodes_taking_one_received_sms_fail_one(
    pg_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: without the names, node two's unit looks before node one's commits,
    finds nothing, and its insert waits for node one's row, then breaks the unique key: its
    post fails (a 500 for the phone). Still stored once."""
    monkeypatch.setattr(hub, "_names", lambda *_: [])
    waited, done, rows = asyncio.run(
        _one_post_through_two_nodes(pg_settings, "sms:received", SMS_POST)
    )
    assert waited == "transactionid"  # node one's uncommitted row of the same key
    assert done[0] is None and isinstance(done[1], psycopg.errors.UniqueViolation)
    assert rows == [(1, 1, 1)]


@pytest.mark.parametrize("event", ["app:started", "system:ping"])
def test_two_nodes_taking_one_post_of_a_phone_s_own_event_record_it_once(
    pg_settings: Settings, event: str
) -> None:
    """An event the phone posts about itself names its outbox key: node two's batch waits
    for node one's, then finds the event recorded; neither fails. (Unnamed, node two's
    `app:started` broke the outbox's unique key, a 500 for the phone; a ping was kept
    apart only by its health row, which the two upserts wrote in turn.)"""
    waited, done, rows = asyncio.run(
        _one_post_through_two_nodes(pg_settings, event, {"health": {"status": "pass"}})
    )
    assert done == [None, None]
    assert rows == [(0, 1, 1)]
    assert waited == "named"


async def _a_report_and_the_phone_s_post_of_its_event(
    settings: Settings,
) -> tuple[str | None, list[object], list[Any]]:
    """A message pulled by a phone whose owner has an `sms:sent` webhook; node one applies
    the phone's report of it Sent in a batch held open, while node two takes the phone's
    own post of `sms:sent`. What node two was seen waiting for, what each gave, and the
    outbox's events (payload) and deliveries then."""
    async with _two_nodes(settings) as (one, two):
        user_id, device = await _owner_and_phone(one)
        hook = WebhookIn(id="in", url="http://127.0.0.1:9/hook", event="sms:sent")
        await webhooks.register(one, user_id, hook, allow_private=True)
        phone = Phone(device.device_id, user_id, None)
        sent = await messages.send(one, None, user_id, messages.SendCommand([NUMBER], text="x"))
        assert (await routing.pull(one, phone, newest_first=False, cap=10)).claimed == 1
        report = _report_of(sent, ProcessingState.SENT)
        wait = outbox.PostWait(frozenset({"sms:sent"}), 30)
        payload = {"messageId": sent.id, "phoneNumber": NUMBER, "sentAt": "2026-03-01T12:00:00Z",
                   "simNumber": 2, "partsCount": 1}  # fmt: skip
        body = _post(device.device_id, "sms:sent", payload)
        waited, done = await _beside_a_held_batch(
            settings,
            one,
            routing.report(one, phone, [report], wait=wait),
            lambda: hub.accept(two, user_id, device.device_id, body),
        )
        events = database_rows(settings, "SELECT event, payload FROM webhook_events")
        deliveries = database_rows(settings, "SELECT count(*) FROM webhook_deliveries")
        return waited, done, [events, deliveries]


def test_a_phone_s_post_of_a_state_event_waits_for_the_report_of_its_message(
    pg_settings: Settings,
) -> None:
    """The post of `sms:sent` names its message, as the report does: on another node it
    waits for the report's batch, then completes the event the report recorded (the post's
    fields merged in) rather than recording it again; neither fails."""
    waited, done, (events, deliveries) = asyncio.run(
        _a_report_and_the_phone_s_post_of_its_event(pg_settings)
    )
    assert isinstance(done[0], routing.Reported) and done[1] is None
    [(event, payload)] = events
    assert event == "sms:sent" and payload["simNumber"] == 2
    assert deliveries == [(1,)]
    assert waited == "named"


async def _replays_crossing(settings: Settings) -> tuple[list[str], list[object]]:
    """Two phones of an owner replay their inboxes (each has an open export, which every
    post of a message in range touches), their posts spread over two nodes: node one's
    batch takes phone p's post, then, once node two's batch waits, phone q's; node two's,
    q's then p's (each unit here is two of a batch's units, run in turn as a batch runs
    them). Each batch names what `hub.accept` would name for its posts. What ran (a unit
    run again shows twice) and what each gave."""
    ran: list[str] = []
    one_posted = asyncio.Event()
    async with _two_nodes(settings) as (one, two):
        user_id, p = await _owner_and_phone(one)
        q = await devices.register(one, user_id, "owner", "phone q", None, None)
        now, at = clock.now(), clock.parse_timestamp(SMS_POST["receivedAt"])
        async with one.write() as conn:
            await inbox_rows.add_exports(conn, [
                {"user_id": user_id, "device_id": phone.device_id, "since": at - timedelta(days=1),
                 "until": at + timedelta(days=1), "types": "SMS", "delivery": "Disabled",
                 "state": inbox_rows.OPEN, "created_at": now, "requested_at": now,
                 "last_activity_at": now}
                for phone in (p, q)
            ])  # fmt: skip

        def post(device_id: str, message_id: str) -> dict[str, Any]:
            return _post(device_id, "sms:received", {**SMS_POST, "messageId": message_id})

        def named(*posts: tuple[str, dict[str, Any]]) -> list[str]:
            return [
                name
                for device_id, body in posts
                for name in hub._names(
                    user_id, device_id, hub._envelope(body),
                    hub._received("sms:received", body["payload"]),
                )
            ]  # fmt: skip

        def posting(name: str, posts: list[tuple[str, dict[str, Any]]]) -> Unit[str]:
            async def work(conn: UnitConnection) -> str:
                ran.append(name)
                (first, body), (then, other) = posts
                await hub.accept_unit(conn, user_id, first, body)
                if name == "one" and not one_posted.is_set():  # (not when run again)
                    one_posted.set()
                    await _until_a_session_waits(settings)
                await hub.accept_unit(conn, user_id, then, other)
                return name

            return work

        by_one = [(p.device_id, post(p.device_id, "p1")), (q.device_id, post(q.device_id, "q1"))]
        by_two = [(q.device_id, post(q.device_id, "q2")), (p.device_id, post(p.device_id, "p2"))]
        first = asyncio.ensure_future(one.write_unit(posting("one", by_one), locks=named(*by_one)))
        try:
            await asyncio.wait_for(one_posted.wait(), 60)
            second = two.write_unit(posting("two", by_two), locks=named(*by_two))
            done = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 60)
        finally:
            one_posted.set()
            if not first.done():
                first.cancel()
                await asyncio.gather(first, return_exceptions=True)
        [(stored,)] = database_rows(settings, "SELECT count(*) FROM inbox")
        assert stored == 4
        return ran, done


def test_two_phones_replays_through_two_nodes_wait_for_each_other_in_one_order(
    pg_settings: Settings,
) -> None:
    """Each post of received messages names its phone's exports: node two's batch waits
    for node one's before any of its posts runs, and nothing runs twice. (Without that
    name, the batches locked the two exports' rows in opposite orders: a deadlock, which
    PostgreSQL broke after its deadlock_timeout, and a batch ran again.)"""
    ran, done = asyncio.run(_replays_crossing(pg_settings))
    assert done == ["one", "two"]
    assert ran == ["one", "two"]


async def _keys_made_by_two_takes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str, list[Any]]:
    """An owner with two deliveries due and no signing key yet (as when the key had been
    in its settings, then taken out). Node two's take finds no key and pauses there (its
    batch open); node one's take, meanwhile, makes one and commits; then node two's goes
    on. The key each signs its request with, and the keys stored."""
    real, paused, resume = webhook_rows.signing_key_unit, asyncio.Event(), asyncio.Event()

    async def first_pauses(conn: UnitConnection, user_id: int) -> str | None:
        key = await real(conn, user_id)
        if not paused.is_set():  # node two's, the first look
            paused.set()
            await resume.wait()
        return key

    async with _two_nodes(settings) as (one, two):
        user_id = await one_event(one, settings, "http://127.0.0.1:9/hook")
        async with one.write() as conn:
            await outbox.record(conn, user_id, None, "sms:sent", "k2", {"n": 2})
        database_rows(settings, "DELETE FROM webhook_signing_keys")
        monkeypatch.setattr(webhook_rows, "signing_key_unit", first_pauses)
        first, second = WebhookWorker(settings, one), WebhookWorker(settings, two)
        by_two: asyncio.Future[list[tuple[Due, int, str]]] | None = None
        try:
            by_two = asyncio.ensure_future(second.take(1))
            await asyncio.wait_for(paused.wait(), 60)
            [(_, _, key_one)] = await asyncio.wait_for(first.take(1), 60)
            resume.set()
            [(_, _, key_two)] = await asyncio.wait_for(by_two, 60)
        finally:
            resume.set()
            if by_two is not None and not by_two.done():
                by_two.cancel()
                await asyncio.gather(by_two, return_exceptions=True)
            await first.close()
            await second.close()
        return key_one, key_two, database_rows(settings, "SELECT key FROM webhook_signing_keys")


def test_two_nodes_taking_for_an_owner_without_a_key_sign_with_the_one_kept(
    pg_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key one node's take made is kept: the other's, which had found none, signs with
    it too (before, it deleted that key and stored its own, so the first node's requests
    carried a signature no receiver could check)."""
    key_one, key_two, stored = asyncio.run(
        asyncio.wait_for(_keys_made_by_two_takes(pg_settings, monkeypatch), 120)
    )
    assert stored == [(key_one,)]
    assert key_two == key_one


async def _upserts(settings: Settings) -> tuple[object, str]:
    db = database_for(settings)
    try:
        await accounts.create_user(db, "owner", "correct horse battery")
        async with db.read() as conn:
            user_id = (await conn.exec_driver_sql("SELECT id FROM users")).scalar_one()
        hub = EventHub()
        await account_settings.update(
            db, hub, user_id, {"messages": {"limit_value": 5}}, replace=False
        )
        await account_settings.update(
            db, hub, user_id, {"ping": {"interval_seconds": 60}}, replace=False
        )
        document = await account_settings.get(db, user_id)
        for _ in range(3):
            async with db.write() as conn:
                await token_rows.bump_generation(conn)
        async with db.read() as conn:
            query = "SELECT value FROM system_values WHERE key = %(key)s"
            rows = await conn.exec_driver_sql(query, {"key": token_rows.GENERATION_KEY})
            generation = rows.scalar_one()
        return document, generation
    finally:
        await db.dispose()


def test_stored_settings_and_the_token_generation_are_upserted(pg_settings: Settings) -> None:
    document, generation = asyncio.run(_upserts(pg_settings))
    assert document["messages"]["limit_value"] == 5  # type: ignore[index]
    assert document["ping"]["interval_seconds"] == 60  # type: ignore[index]
    assert generation == "3"


def test_the_health_ping_opens_a_new_session(pg_settings: Settings, tmp_path: Path) -> None:
    async def ping(settings: Settings) -> None:
        db = database_for(settings)
        try:
            await db.ping()
        finally:
            await db.dispose()

    asyncio.run(ping(pg_settings))  # the server answers
    gone = make_settings(tmp_path / "gone", database_url="postgresql://u:p@127.0.0.1:9/smsgw")
    with pytest.raises(psycopg.OperationalError):
        asyncio.run(ping(gone))  # nothing listens there


async def _revoked_on_one_node(settings: Settings) -> tuple[bool, bool, bool]:
    """Two nodes (two databases handles, two token services) on one PostgreSQL: a token
    revoked through one is refused by the other at its next check."""
    first, second = database_for(settings), database_for(settings)
    issuer, checker = TokenService(settings, first), TokenService(settings, second)
    try:
        await accounts.create_user(first, "owner", "correct horse battery")
        async with first.read() as conn:
            user_id = (await conn.exec_driver_sql("SELECT id FROM users")).scalar_one()
        pair = await issuer.issue(user_id, ["messages:list"])
        before = (await checker.verify(pair.access_token)).user_id == user_id
        await issuer.revoke(user_id, pair.id)
        refused = False
        try:
            await checker.verify(pair.access_token)
        except Unauthorized:
            refused = True
        other = await issuer.issue(user_id, ["messages:list"])
        still = (await checker.verify(other.access_token)).user_id == user_id
        return before, refused, still
    finally:
        await first.dispose()
        await second.dispose()


def test_a_token_revoked_on_one_node_is_refused_on_another(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path / "pg",
        database_url=pg_cluster.create_database(),
        jwt_secret="0123456789abcdef0123456789abcdef",
    )
    migrate.upgrade(settings)
    assert asyncio.run(_revoked_on_one_node(settings)) == (True, True, True)


async def _same_id_through_two_processes(settings: Settings) -> list[object]:
    """Two handles, as two server processes: each checks that the id is free in its own
    transaction, and one of the inserts meets the other's committed row."""
    first, second = database_for(settings), database_for(settings)
    try:
        await accounts.create_user(first, "owner", "correct horse battery")
        async with first.read() as conn:
            user_id = (await conn.exec_driver_sql("SELECT id FROM users")).scalar_one()
        command = messages.SendCommand([NUMBER], text="once", ext_id="only-once")
        sends = (messages.send(db, None, user_id, command) for db in (first, second) * 3)
        return await asyncio.gather(*sends, return_exceptions=True)
    finally:
        await first.dispose()
        await second.dispose()


def test_one_id_sent_through_two_processes_at_once_is_stored_once(pg_settings: Settings) -> None:
    results = asyncio.run(_same_id_through_two_processes(pg_settings))
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))


async def _session_settings(settings: Settings) -> tuple[str, ...]:
    db = database_for(settings)

    async def shown(conn: UnitConnection) -> tuple[str, str]:
        timeout = (await conn.execute("SHOW statement_timeout")).fetchone()[0]
        zone = (await conn.execute("SHOW TimeZone")).fetchone()[0]
        return str(timeout), str(zone)

    try:
        async with db.read() as conn:
            timeout = (await conn.exec_driver_sql("SHOW statement_timeout")).scalar_one()
            zone = (await conn.exec_driver_sql("SHOW TimeZone")).scalar_one()
        return (timeout, zone, *await db.read_unit(shown))
    finally:
        await db.dispose()


def test_the_urls_own_session_options_are_kept_beside_utc(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    url = pg_cluster.create_database() + "?options=-c%20statement_timeout%3D12345"
    settings = make_settings(tmp_path / "pg", database_url=url)
    assert asyncio.run(_session_settings(settings)) == ("12345ms", "UTC", "12345ms", "UTC")


def _end_every_session_of(settings: Settings) -> int:
    """What a restart or a failover of PostgreSQL does to a node's connections: the server
    ends every session of the database (but the one asking); how many it ended."""
    with psycopg.connect(**connect_arguments(settings.resolved_database_url)) as conn:
        ended = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(ended[0]) if ended else 0


def test_sessions_the_server_ended_are_replaced_without_an_error(pg_settings: Settings) -> None:
    """A pooled connection whose session PostgreSQL ended (a restart, a failover, an idle
    timeout) is found out and replaced: the requests after it are answered as before, not
    with a 500, and nothing is stored twice."""
    account = Account("alice", "correct horse battery")
    create_account(pg_settings, account.login, account.password)
    body = {"textMessage": {"text": "hi"}, "phoneNumbers": [NUMBER]}
    with running(pg_settings) as live, live.client(account) as api:

        def send(_: int) -> int:
            with live.client(account) as own:
                return own.post("/messages", json=body).status_code

        sent = 0
        for _ in range(3):
            with ThreadPoolExecutor(8) as pool:  # several pooled connections in use
                assert set(pool.map(send, range(16))) == {200}
            sent += 16
            assert _end_every_session_of(pg_settings) >= 2
            for _ in range(5):  # the credential lookup, then the message's batch
                answer = api.post("/messages", json=body)
                assert answer.status_code == 200, answer.text
                sent += 1
            listed = api.get("/messages", params={"limit": 1})
            assert listed.status_code == 200, listed.text
            assert listed.headers["X-Total-Count"] == str(sent)


def test_a_batch_or_a_read_on_an_ended_session_runs_again_on_a_good_one(
    pg_settings: Settings,
) -> None:
    """The units' own paths, apart from each other: a batch whose connection's session had
    ended before its COMMIT was sent runs once more on another, and so does a read; every
    unit kept once."""

    def read(conn: UnitConnection) -> Any:
        return conn.execute("SELECT count(*) FROM system_values WHERE key LIKE 'k%'")

    async def count(db: PostgresDatabase) -> int:
        async def work(conn: UnitConnection) -> int:
            return int((await read(conn)).fetchone()[0])

        return await db.read_unit(work)

    async def scenario() -> tuple[list[str], int, list[str], int]:
        db = database_for(pg_settings)
        assert isinstance(db, PostgresDatabase)
        try:
            # Three connections in the pool (db_pool_size=3): batches and reads at once.
            await asyncio.gather(
                *(db.write_unit(put(f"warm{i}")) for i in range(6)),
                *(count(db) for _ in range(6)),
            )
            assert _end_every_session_of(pg_settings) >= 1
            batch = await asyncio.gather(*(db.write_unit(put(f"k{i}")) for i in range(4)))
            after_batch = await count(db)
            assert _end_every_session_of(pg_settings) >= 1
            read_first = await count(db)
            more = await asyncio.gather(*(db.write_unit(put(f"k{i}")) for i in range(4, 6)))
            return batch + more, after_batch, [str(read_first)], await count(db)
        finally:
            await db.dispose()

    kept, after_batch, read_first, total = asyncio.run(scenario())
    assert kept == [f"k{i}" for i in range(6)]
    assert after_batch == 4 and read_first == ["4"] and total == 6


def test_while_postgresql_is_down_a_unit_fails_within_seconds_not_the_pools_30(
    tmp_path: Path,
) -> None:
    """With PostgreSQL stopped, a unit fails within seconds (the retry after a cut session
    waits 5 s for a new connection, a unit 10 s), not after psycopg_pool's default 30."""
    cluster = pgcluster.start()
    try:
        settings = make_settings(tmp_path / "pg", database_url=cluster.create_database())
        migrate.upgrade(settings)

        async def scenario() -> list[float]:
            db = database_for(settings)
            took = []
            try:
                await db.write_unit(put("before"))
                cluster.stop()
                for unit in (put("during"), put("again")):
                    started = time.monotonic()
                    with pytest.raises(Exception):  # noqa: B017 (psycopg's or the pool's)
                        await db.write_unit(unit)
                    took.append(time.monotonic() - started)
            finally:
                await db.dispose()
            return took

        took = asyncio.run(scenario())
    finally:
        cluster.stop()
    assert all(seconds < 25 for seconds in took), took
