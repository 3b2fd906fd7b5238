"""Checks of access tokens that overlap (on PostgreSQL a read really waits): a slow, older
load never brings back a revoked token, and a stamp read across a reload is not kept.

The database is a stand-in whose reads wait for the test's go (the order of the overlap is
the test's, not the machine's); the revocation logic is the real one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from smsgw.tokens import repository
from smsgw.tokens.revocations import RevocationCache


class Stored:
    """What the database holds, and gates that hold a read until the test lets it go."""

    def __init__(self) -> None:
        self.generation = 1
        self.revoked = {"X"}
        self.hashes = {1: "hash"}
        self.gates: list[asyncio.Event | None] = []


class StandIn:
    """`Database` as RevocationCache uses it: data_version (none, as on PostgreSQL) and
    read_unit, which reads `stored` at once and returns when its gate opens."""

    def __init__(self, stored: Stored) -> None:
        self.stored = stored

    def data_version(self) -> None:
        return None

    async def read_unit(self, work: Callable[[Any], Awaitable[Any]]) -> Any:
        gate = self.stored.gates.pop(0) if self.stored.gates else None
        result = await work(self.stored)
        if gate is not None:
            await gate.wait()
        return result


@pytest.fixture
def stored(monkeypatch: pytest.MonkeyPatch) -> Stored:
    stored = Stored()

    async def generation(conn: Stored) -> int:
        return conn.generation

    async def revoked_access(conn: Stored, _now: object) -> set[str]:
        return set(conn.revoked)

    async def password_hash(conn: Stored, user_id: int) -> str | None:
        return conn.hashes.get(user_id)

    monkeypatch.setattr(repository, "generation", generation)
    monkeypatch.setattr(repository, "revoked_access", revoked_access)
    monkeypatch.setattr(repository, "password_hash", password_hash)
    return stored


def test_an_older_load_finishing_last_does_not_bring_a_revoked_token_back(
    stored: Stored,
) -> None:
    async def scenario() -> list[bool]:
        cache = RevocationCache(StandIn(stored), lambda h: "stamp")  # type: ignore[arg-type]
        slow = asyncio.Event()
        stored.gates = [slow]  # A reads generation 1 and {X}, then waits
        a = asyncio.create_task(cache.accepts("Y", 1, "stamp"))
        await asyncio.sleep(0)
        stored.generation, stored.revoked = 2, {"X", "T"}  # T revoked
        b = await cache.accepts("T", 1, "stamp")  # reads generation 2: refuses T
        late = asyncio.Event()
        stored.gates = [late]  # C reads generation 2, as kept, then waits
        c = asyncio.create_task(cache.accepts("T", 1, "stamp"))
        await asyncio.sleep(0)
        slow.set()  # A's older load lands after B's newer one
        assert await a
        late.set()
        return [b, await c, await cache.accepts("T", 1, "stamp")]

    assert asyncio.run(scenario()) == [False, False, False]


def test_a_stamp_read_before_a_reload_is_not_kept(stored: Stored) -> None:
    async def scenario() -> list[bool]:
        cache = RevocationCache(StandIn(stored), lambda h: h)  # type: ignore[arg-type]
        assert await cache.accepts("Y", 1, "hash")  # loads generation 1, keeps user 1's stamp
        cache._stamps.clear()  # as after MAX_STAMPS, so that the next check reads it again
        hold = asyncio.Event()
        stored.gates = [None, hold]  # the generation read passes, the stamp read waits
        first = asyncio.create_task(cache.accepts("Y", 1, "hash"))
        for _ in range(3):
            await asyncio.sleep(0)
        del stored.hashes[1]  # the user is deleted: the generation grows
        stored.generation = 2
        deleted = await cache.accepts("Z", 1, "hash")  # reloads: the stamps are forgotten
        hold.set()
        began_before = await first  # it read the stamp before the deletion
        return [deleted, began_before, await cache.accepts("Y", 1, "hash")]

    assert asyncio.run(scenario()) == [False, True, False]
