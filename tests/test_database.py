"""The database layer: group commit keeps units apart, duplicates race to exactly one winner."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from smsgw.config import Settings
from smsgw.db import engine, migrate
from smsgw.db.engine import SQLITE, ColumnWriter, Database, Unit, UnitConnection, database_for
from smsgw.messages.repository import messages
from tests.clients import TLS
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


def test_concurrent_sends_with_one_client_id_store_exactly_one(
    server: LiveServer, alice: Account
) -> None:
    async def scenario() -> list[int]:
        async with httpx.AsyncClient(
            base_url=server.api, auth=(alice.login, alice.password), timeout=30, verify=TLS
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

    async def counted(works: list[Unit[object]], locks: Collection[str] = ()) -> list[object]:
        sizes.append(len(works))
        try:
            return await run(works, locks)
        finally:  # the delay counted from the batch's end: however slow a commit is
            db._batch_began = asyncio.get_running_loop().time()

    db._run_batch = counted  # type: ignore[method-assign,assignment]
    return sizes


def test_a_batch_stops_taking_units_before_their_names_pass_its_lock_budget(
    settings: Settings,
) -> None:
    """Each name a unit gives is a lock of PostgreSQL's shared lock table: a batch takes
    no more than MAX_BATCH_LOCKS (the first unit always), and a unit that names more than
    that names none."""
    migrate.upgrade(settings)
    budget = engine.MAX_BATCH_LOCKS

    def names(count: int, prefix: str) -> list[str]:
        return [f"{prefix}{i}" for i in range(count)]

    async def scenario() -> list[tuple[int, int]]:
        db = database_for(settings)
        seen: list[tuple[int, int]] = []
        run = db._run_batch

        async def counted(works: list[Unit[object]], locks: Collection[str] = ()) -> list[object]:
            seen.append((len(works), len(locks)))
            return await run(works, locks)

        db._run_batch = counted  # type: ignore[method-assign,assignment]
        try:
            await asyncio.gather(
                db.write_unit(put("a"), locks=names(budget - 56, "a")),
                db.write_unit(put("b"), locks=names(100, "b")),  # over the budget: next batch
                db.write_unit(put("c"), locks=names(budget + 1, "c")),  # too many: none
                db.write_unit(put("d"), locks=names(2, "d")),
            )
            return seen
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == [(1, budget - 56), (3, 102)]


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


def test_an_error_of_the_database_does_not_carry_the_statements_values(settings: Settings) -> None:
    """SQLAlchemy writes a failed statement's parameters into the error's text, which the
    log then shows (an incoming SMS that could not be stored put its text and sender into
    the log). Both engines hide them (docs/operations.md: message text is never logged)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    migrate.upgrade(settings)

    async def body() -> str:
        db = database_for(settings)
        try:
            async with db.writer.begin() as conn:
                await conn.execute(
                    text("INSERT INTO no_such_table (body) VALUES (:body)"),
                    {"body": "secret code 123456"},
                )
        except DBAPIError as error:
            return str(error)
        finally:
            await db.dispose()
        raise AssertionError("the insert did not fail")

    said = asyncio.run(body())
    assert "no_such_table" in said and "secret code" not in said
