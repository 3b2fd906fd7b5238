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

from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.engine import Database
from smsgw.db.turn import SUFFIX, Turn
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
    as before); its thread, which gets the lock once the holder gives it back, gives it
    back at once; so does a cancelled wait."""
    path = database(tmp_path)

    async def scenario() -> bool:
        holder, impatient, cancelled, last = (Turn(path) for _ in range(4))
        try:
            await holder.take(PATIENCE)
            given_up = not await impatient.take(0.05)
            taking = asyncio.create_task(cancelled.take(PATIENCE))
            assert await still_waiting(taking)
            taking.cancel()
            with pytest.raises(asyncio.CancelledError):
                await taking
            holder.give()
            await last.take(PATIENCE)  # neither wait given up kept it
            assert not impatient.held and not cancelled.held
            return given_up
        finally:
            for turn in (holder, impatient, cancelled, last):
                turn.close()

    assert asyncio.run(scenario())
    assert free(path)


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
    settings: Settings,
) -> None:
    """While another process holds the turn, the units queue (the loop serving); once it
    gives the turn back, the units queued meanwhile go in one batch, and the turn is free
    again after its COMMIT."""
    migrate.upgrade(settings)
    db = Database(settings)
    with holding(db.path) as give_back:

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
    database = tmp_path / "db"
    database.touch()
    database.chmod(0o640)

    async def scenario() -> None:
        turn = Turn(str(database))
        try:
            await turn.take(PATIENCE)
        finally:
            turn.close()

    asyncio.run(scenario())
    assert (tmp_path / f"db{SUFFIX}").stat().st_mode & 0o777 == 0o640


@pytest.mark.sqlite_only("the turn orders SQLite's writers; PostgreSQL writes side by side")
def test_a_turn_file_that_cannot_be_opened_leaves_writes_working_and_says_so(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Should the lock file be unusable (here a directory stands in its place), group
    commit waits for SQLite's lock as it did before the turn, and the log says why once."""
    migrate.upgrade(settings)
    db = Database(settings)
    Path(db.path + SUFFIX).mkdir()

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
