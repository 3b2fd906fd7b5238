"""The database layer: group commit keeps units apart, duplicates race to exactly one winner."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from smsgw.config import Settings
from smsgw.db import engine, migrate
from smsgw.db.engine import SQLITE, ColumnWriter, Database, Unit, UnitConnection, database_for
from smsgw.messages.repository import messages
from tests.conftest import Account, LiveServer, database_rows, make_settings, running


def put(key: str, fail: bool = False) -> Unit[str]:
    async def work(conn: UnitConnection) -> str:
        await conn.execute("INSERT INTO system_values (key, value) VALUES (?, 'v')", (key,))
        if fail:
            raise ValueError(f"unit {key} fails")
        return key

    return work


def assert_only_the_failing_unit_is_lost(db: Database, stored: Callable[[], set[str]]) -> None:
    """Eight units queued at once, the fourth failing: it alone is undone and gets its
    error; `stored` reads the keys the database holds afterwards."""

    async def scenario() -> list[object]:
        try:
            units = [put(f"k{i}", fail=i == 3) for i in range(8)]
            return await asyncio.gather(*(db.write_unit(u) for u in units), return_exceptions=True)
        finally:
            await db.dispose()

    results = asyncio.run(scenario())
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [f"k{i}" for i in range(8) if i != 3]
    assert stored() == {f"k{i}" for i in range(8) if i != 3}


def test_a_failing_unit_of_a_batch_is_rolled_back_alone(settings: Settings) -> None:
    migrate.upgrade(settings)

    def stored() -> set[str]:
        return {row[0] for row in database_rows(settings, "SELECT key FROM system_values")}

    assert_only_the_failing_unit_is_lost(database_for(settings), stored)


@pytest.mark.sqlite_only(
    "SQLite's one write lock, held by another connection; PostgreSQL has none such, and its "
    "units await the server without holding the event loop"
)
def test_a_batch_waits_for_the_lock_another_process_holds_without_stalling_the_loop(
    settings: Settings,
) -> None:
    """Group commit runs its units on the event loop; when another connection (another
    process, say `smsgw send`) holds the write lock, the loop must not stall on it: the
    batch tries again now and then, the loop serving meanwhile, and commits once the lock
    is free."""
    migrate.upgrade(settings)
    other = sqlite3.connect(settings.data_dir / "smsgw.db", isolation_level=None)

    async def scenario() -> tuple[list[str], int]:
        db = Database(settings)
        await db.write_unit(put("first"))  # a running server, connected already
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO system_values (key, value) VALUES ('other', 'v')")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beat = asyncio.create_task(ticker())
        try:
            writes = asyncio.gather(*(db.write_unit(put(f"k{i}")) for i in range(3)))
            await asyncio.sleep(0.5)
            assert not writes.done()  # waiting for the lock, not failed
            ticks_while_locked = ticks
            other.execute("COMMIT")
            return list(await writes), ticks_while_locked
        finally:
            beat.cancel()
            await db.dispose()

    stored, ticks_while_locked = asyncio.run(scenario())
    other.close()
    assert stored == ["k0", "k1", "k2"]
    assert ticks_while_locked >= 20  # the loop kept running (50 ticks in 0.5 s if free)
    with sqlite3.connect(settings.data_dir / "smsgw.db") as conn:
        keys = {row[0] for row in conn.execute("SELECT key FROM system_values")}
    assert {"other", "k0", "k1", "k2"} <= keys


UNITS_ON_THREAD = pytest.mark.sqlite_only(
    "units on the write thread are SQLite's (`units_on_thread`): PostgreSQL's units await the "
    "server on the loop"
)


def on_thread(settings: Settings) -> Database:
    db = Database(settings)
    db.units_on_thread = True
    return db


@UNITS_ON_THREAD
def test_on_the_write_thread_a_failing_unit_of_a_batch_is_rolled_back_alone(
    settings: Settings,
) -> None:
    migrate.upgrade(settings)

    def stored() -> set[str]:
        return {row[0] for row in database_rows(settings, "SELECT key FROM system_values")}

    assert_only_the_failing_unit_is_lost(on_thread(settings), stored)


@UNITS_ON_THREAD
def test_on_the_write_thread_the_loop_runs_while_a_unit_does(settings: Settings) -> None:
    """What `units_on_thread` is for (`smsgw links run`): while a batch's statements run,
    the loop goes on (a link's answers are read); on the loop it would wait for them."""
    migrate.upgrade(settings)
    ticks, run = 0, "thread"
    seen: list[int] = []

    async def slow(conn: UnitConnection) -> int:
        seen.append(ticks)
        # A statement that takes a while (SQLite lets go of the GIL while it runs).
        query = (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000)"
            " SELECT count(*) FROM n"
        )
        counted = int((await conn.execute(query)).fetchone()[0])
        seen.append(ticks)
        await put(f"slow-{run}")(conn)
        return counted

    async def scenario(db: Database) -> tuple[int, str]:
        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        beat = asyncio.create_task(ticker())
        try:
            counted = await db.write_unit(slow)
            return counted, await db.write_unit(put(f"after-{run}"))
        finally:
            beat.cancel()
            await db.dispose()

    assert asyncio.run(scenario(on_thread(settings))) == (3_000_000, "after-thread")
    assert seen[1] - seen[0] >= 3  # the ticker ran meanwhile
    keys = {row[0] for row in database_rows(settings, "SELECT key FROM system_values")}
    assert {"slow-thread", "after-thread"} <= keys
    seen.clear()
    run = "loop"
    asyncio.run(scenario(Database(settings)))  # on the loop: it waits for the statement
    assert seen[1] == seen[0]


@UNITS_ON_THREAD
def test_on_the_write_thread_a_batch_waits_for_the_lock_another_process_holds(
    settings: Settings,
) -> None:
    migrate.upgrade(settings)
    other = sqlite3.connect(settings.data_dir / "smsgw.db", isolation_level=None)

    async def scenario() -> list[str]:
        db = on_thread(settings)
        try:
            await db.write_unit(put("first"))
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO system_values (key, value) VALUES ('other', 'v')")
            writes = asyncio.gather(*(db.write_unit(put(f"k{i}")) for i in range(3)))
            await asyncio.sleep(0.3)
            assert not writes.done()  # waiting for the lock, not failed
            other.execute("COMMIT")
            return list(await asyncio.wait_for(writes, 20))
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == ["k0", "k1", "k2"]
    other.close()
    keys = {row[0] for row in database_rows(settings, "SELECT key FROM system_values")}
    assert {"first", "other", "k0", "k1", "k2"} <= keys


@UNITS_ON_THREAD
def test_on_the_write_thread_a_unit_that_awaits_anything_else_fails_and_keeps_nothing(
    settings: Settings,
) -> None:
    """A unit may await only its connection's statements (db/engine.py): on the write thread
    one that awaits anything else is an error, and its batch keeps nothing."""
    migrate.upgrade(settings)

    async def waits(conn: UnitConnection) -> str:
        await put("waits")(conn)
        await asyncio.sleep(0)
        return "waits"

    async def scenario() -> tuple[BaseException | str, str]:
        db = on_thread(settings)
        try:
            failed = await asyncio.gather(db.write_unit(waits), return_exceptions=True)
            return failed[0], await db.write_unit(put("next"))
        finally:
            await db.dispose()

    failed, after = asyncio.run(scenario())
    assert isinstance(failed, RuntimeError)
    assert "awaited something other" in str(failed)
    assert after == "next"
    keys = {row[0] for row in database_rows(settings, "SELECT key FROM system_values")}
    assert "waits" not in keys and "next" in keys


def test_concurrent_sends_with_one_client_id_store_exactly_one(
    server: LiveServer, alice: Account
) -> None:
    async def scenario() -> list[int]:
        async with httpx.AsyncClient(
            base_url=server.api, auth=(alice.login, alice.password), timeout=30
        ) as client:
            body = {"id": "only-once", "phoneNumbers": ["+12025550100"], "message": "x"}
            answers = await asyncio.gather(
                *(client.post("/messages", json=body) for _ in range(10))
            )
            return sorted(a.status_code for a in answers)

    assert asyncio.run(scenario()) == [200] + [409] * 9
    with server.client(alice) as api:
        assert api.get("/messages").headers["x-total-count"] == "1"


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_committed_messages_survive_a_restart(tmp_path: Path, synchronous: str) -> None:
    settings = make_settings(tmp_path / "data", sqlite_synchronous=synchronous)
    with running(settings) as live:
        account = live.create_user("dana")
        with live.client(account) as api:
            body = {"phoneNumbers": ["+12025550100"], "message": "x"}
            ids = [api.post("/messages", json=body).json()["id"] for _ in range(20)]
    with running(settings) as again, again.client(account) as api:
        listed = api.get("/messages", params={"limit": 100}).json()
    assert sorted(m["id"] for m in listed) == sorted(ids)


def batch_sizes(db: Database) -> list[int]:
    """The number of units of each batch `db` commits from now on (filled as they run)."""
    sizes: list[int] = []
    run = db._run_batch

    async def counted(works: list[Unit[object]]) -> list[object]:
        sizes.append(len(works))
        try:
            return await run(works)
        finally:  # the delay counted from the batch's end: however slow a commit is
            db._batch_began = asyncio.get_running_loop().time()

    db._run_batch = counted  # type: ignore[method-assign,assignment]
    return sizes


def test_a_lone_writer_never_waits_for_others(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One unit at a time, each awaited: nothing queues while a batch runs, so no batch
    waits for more (with a wait of 30 s, any would time the test out)."""
    migrate.upgrade(settings)
    monkeypatch.setattr(engine, "GATHER_SECONDS", 30.0)

    async def scenario() -> tuple[list[int], bool]:
        db = database_for(settings)
        try:
            sizes = batch_sizes(db)
            for i in range(10):
                await asyncio.wait_for(db.write_unit(put(f"k{i}")), 20)
            return sizes, db._gathering
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == ([1] * 10, False)


def test_units_that_queue_while_a_batch_runs_make_the_next_batch_wait_for_more(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit's commit delay (db/engine.py GATHER_SECONDS): once a unit queued while a
    batch ran, the next batch begins no sooner than GATHER_SECONDS after that one began, so
    units coming meanwhile share its commit; a wait that brings none ends the waiting."""
    migrate.upgrade(settings)
    monkeypatch.setattr(engine, "GATHER_SECONDS", 2.0)
    running_now, release = asyncio.Event(), asyncio.Event()

    async def held(conn: UnitConnection) -> str:
        await put("held")(conn)
        running_now.set()
        await release.wait()
        return "held"

    async def scenario() -> tuple[list[int], list[str], bool, list[int]]:
        db = database_for(settings)
        try:
            sizes = batch_sizes(db)
            first = asyncio.create_task(db.write_unit(held))
            await asyncio.wait_for(running_now.wait(), 20)
            queued = asyncio.create_task(db.write_unit(put("queued")))  # while it runs
            release.set()
            await asyncio.wait_for(first, 20)
            # The next batch (of "queued") waits: these two come in time to join it.
            later = [asyncio.create_task(db.write_unit(put(k))) for k in ("later1", "later2")]
            stored = await asyncio.wait_for(asyncio.gather(queued, *later), 20)
            gathered = list(sizes)
            # One more unit alone: its batch waits, in vain; the one after it does not.
            await asyncio.wait_for(db.write_unit(put("alone")), 20)
            still = db._gathering
            await asyncio.wait_for(db.write_unit(put("after")), 20)
            return gathered, stored, still, sizes[len(gathered) :]
        finally:
            await db.dispose()

    gathered, stored, still, after = asyncio.run(scenario())
    assert gathered == [1, 3]
    assert stored == ["queued", "later1", "later2"]
    assert (still, after) == (False, [1, 1])


def test_urgent_units_go_in_a_batch_of_their_own_ahead_of_those_queued_before(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`write_unit(urgent=True)` (a link's intents, which its window waits for): the next
    batch holds only the urgent units queued, and does not wait for more (GATHER_SECONDS);
    the others follow in their order."""
    migrate.upgrade(settings)
    monkeypatch.setattr(engine, "GATHER_SECONDS", 5.0)
    running_now, release = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    def noted(key: str) -> Unit[str]:
        async def work(conn: UnitConnection) -> str:
            ran.append(key)
            return await put(key)(conn)

        return work

    async def held(conn: UnitConnection) -> str:
        await noted("held")(conn)
        running_now.set()
        await release.wait()
        return "held"

    async def scenario() -> tuple[list[int], bool, list[str]]:
        db = database_for(settings)
        try:
            sizes = batch_sizes(db)
            first = asyncio.create_task(db.write_unit(held))
            await asyncio.wait_for(running_now.wait(), 20)
            keys = [("a", False), ("u1", True), ("b", False), ("u2", True), ("c", False)]
            tasks = {k: asyncio.create_task(db.write_unit(noted(k), urgent=u)) for k, u in keys}
            await asyncio.sleep(0)  # (queued while the batch runs)
            release.set()
            await asyncio.wait_for(first, 20)
            await asyncio.wait_for(asyncio.gather(tasks["u1"], tasks["u2"]), 20)
            others_waited = not any(tasks[k].done() for k in "abc")  # (for GATHER_SECONDS)
            await asyncio.wait_for(asyncio.gather(*tasks.values()), 20)
            return sizes, others_waited, ran
        finally:
            await db.dispose()

    sizes, others_waited, order = asyncio.run(scenario())
    assert sizes == [1, 2, 3]
    assert others_waited
    assert order == ["held", "u1", "u2", "a", "b", "c"]


def test_a_timestamp_written_twice_is_converted_once() -> None:
    """`ColumnWriter` remembers a timestamp's text (a unit's rows share one `now`); an equal
    instant in another zone is the same text."""
    write = ColumnWriter(messages.c.created_at)
    conn = type("Conn", (), {"dialect": SQLITE})()
    at = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    elsewhere = at.astimezone(timezone(timedelta(hours=2)))
    assert (
        write(conn, at) == write(conn, elsewhere) == write(conn, at) == "2026-12-05 12:00:00.000000"
    )
    assert write._remembering["sqlite"].cache_info().hits == 2  # type: ignore[attr-defined]
