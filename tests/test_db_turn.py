"""SQLite's write turn between processes (db/turn.py): handed over when given back, never
kept by a wait given up, taken by group commit around each batch."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.engine import Database, UnitConnection
from smsgw.db.turn import SUFFIX, Turn
from tests.conftest import database_rows
from tests.test_database import batch_sizes, put

#: Generous: these waits end on a condition, long before this on any machine.
PATIENCE = 20.0

HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""


def free(path: str) -> bool:
    """Whether nobody holds the turn on `path` (tried without waiting, on a descriptor of
    its own: a holder in this process counts too)."""
    fd = os.open(path + SUFFIX, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # (gives it back if taken)
    return True


async def still_waiting(task: asyncio.Task[object]) -> bool:
    """Whether `task` is still waiting after the loop had a good while to finish it (it
    cannot finish while the turn is held elsewhere, however fast the machine is)."""
    for _ in range(20):
        await asyncio.sleep(0.005)
    return not task.done()


def database(tmp_path: Path) -> str:
    """The path of a database file (the turn takes its permissions)."""
    (tmp_path / "db").touch()
    return str(tmp_path / "db")


def test_a_turn_held_elsewhere_is_handed_over_when_given_back(tmp_path: Path) -> None:
    path = database(tmp_path)

    async def scenario() -> tuple[bool, bool, bool]:
        first, second = Turn(path), Turn(path)
        try:
            await first.take(PATIENCE)
            taking = asyncio.create_task(second.take(PATIENCE))
            waited = await still_waiting(taking)
            first.give()
            await asyncio.wait_for(taking, PATIENCE)
            return waited, second.held, free(path)
        finally:
            first.close()
            second.close()

    assert asyncio.run(scenario()) == (True, True, False)
    assert free(path)  # closed: given back


def test_a_wait_given_up_never_keeps_the_turn(tmp_path: Path) -> None:
    """A wait past its patience ends without the turn (the batch then meets SQLite's lock
    as before), and so does a cancelled one; their threads, which get the lock in their
    turn, give it back at once, and never the lock of the one that holds it then."""
    path = database(tmp_path)

    async def scenario() -> tuple[bool, bool, bool, bool]:
        holder, impatient, cancelled, last = (Turn(path) for _ in range(4))
        try:
            assert await holder.take(PATIENCE)
            given_up = not await impatient.take(0.05)
            taking = asyncio.create_task(cancelled.take(PATIENCE))
            assert await still_waiting(taking)
            taking.cancel()
            with pytest.raises(asyncio.CancelledError):
                await taking
            holder.give()
            had = await last.take(PATIENCE)
            # The waits given up are still queued for the lock, in threads of their own:
            # they cannot take it from `last`, whatever they do meanwhile.
            await still_waiting(asyncio.create_task(asyncio.Event().wait()))
            kept = not free(path)
            last.give()
            # Their threads get the lock in turn, give it back, and end once closed.
            threads = [t._waiter.thread for t in (impatient, cancelled) if t._waiter]
            impatient.close()
            cancelled.close()
            for thread in threads:
                await asyncio.to_thread(thread.join, PATIENCE)
            released = free(path)
            return given_up, had, kept, released and not (impatient.held or cancelled.held)
        finally:
            for turn in (holder, impatient, cancelled, last):
                turn.close()

    assert asyncio.run(scenario()) == (True, True, True, True)


def test_a_wait_given_up_does_not_give_back_the_turn_taken_after_it(tmp_path: Path) -> None:
    """One Turn gives a wait up, then takes the turn without waiting once it is free: the
    wait given up, which then gets the lock in its thread, must not give that back."""
    path = database(tmp_path)

    async def scenario() -> tuple[bool, bool, bool]:
        holder, turn = Turn(path), Turn(path)
        try:
            assert await holder.take(PATIENCE)
            given_up = not await turn.take(0.05)
            holder.give()
            had = await turn.take(PATIENCE)
            await still_waiting(asyncio.create_task(asyncio.Event().wait()))
            return given_up, had, not free(path)
        finally:
            holder.close()
            turn.close()

    assert asyncio.run(scenario()) == (True, True, True)


def test_taking_a_turn_one_holds_already_is_a_mistake(tmp_path: Path) -> None:
    async def scenario() -> None:
        turn = Turn(database(tmp_path))
        try:
            assert await turn.take(PATIENCE)
            with pytest.raises(RuntimeError):
                await turn.take(PATIENCE)
        finally:
            turn.close()

    asyncio.run(scenario())


@pytest.mark.sqlite_only("the turn orders SQLite's writers; PostgreSQL writes side by side")
def test_group_commit_waits_for_the_turn_another_process_holds_and_takes_what_queued(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """While another process holds the turn, the units queue (the loop serving); once it
    gives the turn back, the units queued meanwhile go in one batch, and the turn is free
    again after its COMMIT."""
    migrate.upgrade(settings)
    db = Database(settings)
    with caplog.at_level("WARNING", logger="smsgw.db.turn"), holding(db.path) as give_back:

        async def scenario() -> tuple[bool, list[str], list[int], bool]:
            try:
                sizes = batch_sizes(db)
                writes = asyncio.ensure_future(
                    asyncio.gather(*(db.write_unit(put(f"k{i}")) for i in range(5)))
                )
                waited = await still_waiting(writes)
                give_back()
                stored = await asyncio.wait_for(writes, PATIENCE)
                return waited, list(stored), sizes, free(db.path)
            finally:
                await db.dispose()

        waited, stored, sizes, after = asyncio.run(scenario())
    assert waited
    assert stored == [f"k{i}" for i in range(5)]
    assert sizes == [5]
    assert after
    assert not caplog.records  # handed over, not given up on after its patience


@pytest.mark.sqlite_only("the turn orders SQLite's writers; PostgreSQL writes side by side")
def test_a_write_block_waits_for_the_turn_too_and_gives_it_back(settings: Settings) -> None:
    migrate.upgrade(settings)
    db = Database(settings)

    async def block() -> None:
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO system_values (key, value) VALUES ('w', 'v')"))

    with holding(db.path) as give_back:

        async def scenario() -> tuple[bool, bool]:
            try:
                writing = asyncio.create_task(block())
                waited = await still_waiting(writing)
                give_back()
                await asyncio.wait_for(writing, PATIENCE)
                return waited, free(db.path)
            finally:
                await db.dispose()

        assert asyncio.run(scenario()) == (True, True)
    assert database_rows(settings, "SELECT value FROM system_values WHERE key = 'w'") == [("v",)]


@pytest.mark.sqlite_only("the turn orders SQLite's writers; PostgreSQL writes side by side")
def test_a_batch_that_writes_nothing_gives_the_turn_back_too(settings: Settings) -> None:
    """Its COMMIT runs on the loop (no WAL sync), not on the write thread."""
    migrate.upgrade(settings)

    async def look(conn: UnitConnection) -> int:
        await conn.execute("SELECT count(*) FROM system_values")
        return 1

    async def scenario() -> tuple[int, bool]:
        db = Database(settings)
        try:
            return await db.write_unit(look), free(db.path)
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == (1, True)


@pytest.mark.sqlite_only("the turn orders SQLite's writers; PostgreSQL writes side by side")
def test_group_commit_gives_the_turn_back_after_a_batch_whose_unit_fails(
    settings: Settings,
) -> None:
    migrate.upgrade(settings)

    async def scenario() -> tuple[list[object], bool]:
        db = Database(settings)
        try:
            units = [put("a"), put("b", fail=True), put("c")]
            done = await asyncio.gather(*(db.write_unit(u) for u in units), return_exceptions=True)
            return done, free(db.path)
        finally:
            await db.dispose()

    done, after = asyncio.run(scenario())
    assert done[0] == "a" and done[2] == "c" and isinstance(done[1], ValueError)
    assert after


@contextmanager
def holding(database: str) -> Iterator[Callable[[], None]]:
    """Another process holding the turn of `database` until the call given back."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, database + SUFFIX],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as child:  # fmt: skip
        assert child.stdin is not None and child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "held"

            def give_back() -> None:
                assert child.stdin is not None
                child.stdin.write("\n")
                child.stdin.flush()
                child.wait(PATIENCE)

            yield give_back
        finally:
            child.kill()


def test_the_turn_file_takes_the_database_files_permissions(tmp_path: Path) -> None:
    """Whatever the umask (here one that would leave it to its owner alone)."""
    file = tmp_path / "db"
    file.touch()
    file.chmod(0o660)
    umask = os.umask(0o077)

    async def scenario() -> None:
        turn = Turn(str(file))
        try:
            assert await turn.take(PATIENCE)
        finally:
            turn.close()

    try:
        asyncio.run(scenario())
    finally:
        os.umask(umask)
    assert (tmp_path / f"db{SUFFIX}").stat().st_mode & 0o777 == 0o660


@pytest.mark.sqlite_only("the turn orders SQLite's writers; PostgreSQL writes side by side")
def test_a_turn_file_that_cannot_be_opened_leaves_writes_working_and_says_so(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Should the lock file be unusable (here a link to nowhere stands in its place), group
    commit waits for SQLite's lock as it did before the turn, and the log says why once."""
    migrate.upgrade(settings)
    db = Database(settings)
    Path(db.path + SUFFIX).symlink_to(settings.data_dir / "nowhere" / "turn")

    async def scenario() -> list[str]:
        try:
            first = await db.write_unit(put("a"))
            return [first, *await asyncio.gather(db.write_unit(put("b")), db.write_unit(put("c")))]
        finally:
            await db.dispose()

    with caplog.at_level("WARNING", logger="smsgw.db.turn"):
        assert asyncio.run(scenario()) == ["a", "b", "c"]
    warned = [r.getMessage() for r in caplog.records if r.name == "smsgw.db.turn"]
    assert len(warned) == 1 and "cannot be used" in warned[0]
