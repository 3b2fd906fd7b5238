"""PostgreSQL's bus between nodes (events/pgbus.py), on the test session's own cluster:
several members in one event loop, each with its own connections, as separate nodes would
have. (The hub over it: tests/test_shared_hub.py; real nodes: tests/test_multinode.py.)"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest

from smsgw.db.postgres import connect_arguments
from smsgw.events import pgbus
from smsgw.events.pgbus import PgBus
from tests.pgcluster import Cluster

pytestmark = pytest.mark.one_engine("they choose their engines themselves")  # conftest.py

KEY = b"k" * 32


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


async def eventually(check: Callable[[], bool], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def url(pg_cluster: Cluster) -> str:
    return pg_cluster.create_database()


@asynccontextmanager
async def members(url: str, count: int) -> AsyncIterator[list[PgBus]]:
    buses = [PgBus(connect_arguments(url), KEY) for _ in range(count)]
    try:
        for bus in buses:
            await bus.start()
        yield buses
    finally:
        for bus in buses:
            await bus.stop()


def heard(bus: PgBus, kind: str = "x") -> list[tuple[str, Any]]:
    got: list[tuple[str, Any]] = []
    bus.on(kind, lambda sender, message: got.append((sender, message[1])))
    return got


async def terminate(url: str, query_prefix: str, name: str = "") -> None:
    """End, from the server's side, a bus connection to this test's database whose last
    statement began with `query_prefix` and names `name` (as a restarted server or a cut
    network would)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:

        async def ended() -> bool:
            cursor = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name LIKE 'smsgw bus%%'"
                " AND query LIKE %s AND query LIKE %s",
                (query_prefix + "%", f"%{name}%"),
            )
            return bool(await cursor.fetchall())

        deadline = time.monotonic() + 30
        while not await ended():
            assert time.monotonic() < deadline, "no such connection"
            await asyncio.sleep(0.05)


def test_a_broadcast_reaches_every_other_member_and_a_message_only_its_member(url: str) -> None:
    async def scenario() -> None:
        async with members(url, 3) as (a, b, c):
            on_a, on_b, on_c = heard(a), heard(b), heard(c)
            a.broadcast(["x", "all"])
            a.send(c.name, ["x", "to c"])
            await eventually(lambda: len(on_b) == 1 and len(on_c) == 2)
            await asyncio.sleep(0.2)  # a wrong delivery would show by now
            assert on_a == []  # its own broadcast is not handed to itself
            assert on_b == [(a.name, "all")]
            assert on_c == [(a.name, "all"), (a.name, "to c")]

    run(scenario)


def test_a_burst_goes_in_few_notices_in_order_and_none_is_lost(url: str) -> None:
    async def scenario() -> None:
        async with members(url, 2) as (a, b):
            got = heard(b)
            for i in range(5000):
                a.send(b.name, ["x", i, "y" * 40])
            await eventually(lambda: len(got) == 5000)
            assert [n for _, n in got] == list(range(5000)) and a.dropped == 0

    run(scenario)


def test_a_message_too_big_for_a_notice_is_dropped_alone(url: str) -> None:
    async def scenario() -> None:
        async with members(url, 2) as (a, b):
            got = heard(b)
            a.send(b.name, ["x", "before"])
            a.send(b.name, ["x", "y" * 10_000])
            a.send(b.name, ["x", "after"])
            await eventually(lambda: len(got) == 2)
            assert [n for _, n in got] == ["before", "after"] and a.dropped == 1

    run(scenario)


def test_notices_that_are_not_the_bus_are_ignored(url: str) -> None:
    async def scenario() -> None:
        async with members(url, 2) as (a, b):
            got = heard(b)
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as other:
                for junk in ("", "nope", "[1,2]", '["a",1,"x"]', '["a",1,[["x"]]]', "[" * 5000):
                    await other.execute("SELECT pg_notify(%s, %s)", (pgbus.CHANNEL, junk))
            a.broadcast(["x", "still works"])
            await eventually(lambda: (a.name, "still works") in got)

    run(scenario)


def test_a_listener_cut_off_reconnects_and_reads_afresh(url: str) -> None:
    async def scenario() -> None:
        async with members(url, 2) as (a, b):
            got = heard(b)
            gaps: list[int] = []
            b.on_gap(lambda: gaps.append(b.connections))
            await terminate(url, "LISTEN", b.name)
            await eventually(lambda: gaps == [2])
            a.send(b.name, ["x", "after the gap"])
            await eventually(lambda: got == [(a.name, "after the gap")])

    run(scenario)


def test_what_is_sent_while_the_sending_connection_is_cut_still_goes(url: str) -> None:
    async def scenario() -> None:
        async with members(url, 2) as (a, b):
            got = heard(b)
            a.send(b.name, ["x", 1])
            await eventually(lambda: len(got) == 1)
            await terminate(url, "SELECT pg_notify")
            for n in range(2, 5):
                a.send(b.name, ["x", n])
            await eventually(lambda: len(got) == 4)
            assert [n for _, n in got] == [1, 2, 3, 4]

    run(scenario)


def test_a_listener_that_no_longer_hears_itself_reconnects(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deafness without an error (a silent network): the member's echoes stop arriving."""
    monkeypatch.setattr(pgbus, "ECHO_SECONDS", 0.1)
    monkeypatch.setattr(pgbus, "DEAF_SECONDS", 4.0)

    async def scenario() -> None:
        async with members(url, 1) as (a,):
            gaps: list[int] = []
            a.on_gap(lambda: gaps.append(a.connections))
            await asyncio.sleep(0.5)
            assert gaps == []  # it hears its echoes: nothing to do
            a.name = "renamed"  # its echoes now go to a channel it does not listen on
            await eventually(lambda: gaps == [2])
            await asyncio.sleep(0.5)
            assert gaps == [2]  # listening on its new channel, it hears itself again

    run(scenario)


def test_a_notice_without_the_clusters_signature_is_ignored(url: str) -> None:
    """Any role that may connect may NOTIFY: a well-formed notice signed with another key (or
    none) is dropped, so nobody else can fake a node's registry, wakes or limit counts."""

    async def scenario() -> None:
        async with members(url, 2) as (a, b):
            got = heard(b)
            stranger = PgBus(connect_arguments(url), b"another key" * 3)
            body = json.dumps(["x", 1, [["x", "forged"]]])
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as other:
                for payload in (stranger._mac(body) + body, "0" * pgbus.MAC_LENGTH + body, body):
                    await other.execute("SELECT pg_notify(%s, %s)", (pgbus.CHANNEL, payload))
            a.broadcast(["x", "signed"])
            await eventually(lambda: (a.name, "signed") in got)
            assert got == [(a.name, "signed")] and b.forged == 3

    run(scenario)


def test_a_replayed_notice_is_ignored(url: str) -> None:
    """A role that may LISTEN sees the signed notices: sent again, one is dropped."""

    async def scenario() -> None:
        async with members(url, 2) as (a, b):
            got = heard(b)
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as spy:
                await spy.execute(f'LISTEN "{pgbus.CHANNEL}_{b.name}"')
                a.send(b.name, ["x", "once"])
                async for notice in spy.notifies(timeout=30, stop_after=1):
                    captured = notice.payload
                await eventually(lambda: got == [(a.name, "once")])
                await spy.execute(
                    "SELECT pg_notify(%s, %s)", (f"{pgbus.CHANNEL}_{b.name}", captured)
                )
            await eventually(lambda: b.forged == 1)
            a.send(b.name, ["x", "after"])
            await eventually(lambda: len(got) == 2)
            assert got == [(a.name, "once"), (a.name, "after")]

    run(scenario)


def test_a_long_backlog_is_packed_encoding_each_message_once(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an outage, thousands of pending registry parts must not hold up the loop:
    each message is encoded once, whatever the backlog (it was re-encoded per notice)."""
    bus = PgBus(connect_arguments(url), KEY)
    part = ["r", 1, 0, 1, [[f"{i:021d}", 7, 1] for i in range(150)]]
    calls = 0
    dumps = json.dumps

    def counted(*args: Any, **kwargs: Any) -> str:
        nonlocal calls
        calls += 1
        return dumps(*args, **kwargs)

    monkeypatch.setattr(pgbus.json, "dumps", counted)
    _channels, payloads = bus._payloads([(pgbus.CHANNEL, part)] * 1000)
    assert calls == 1000 + len(payloads)  # each message, then each envelope
    assert len(payloads) == 1000 and all(len(p) <= pgbus.MAX_PAYLOAD for p in payloads)
    small = bus._payloads([(pgbus.CHANNEL, ["x", i]) for i in range(3000)])[1]
    assert 1 < len(small) < 20 and all(len(p) <= pgbus.MAX_PAYLOAD for p in small)


def test_what_is_pending_at_stop_is_sent(url: str) -> None:
    async def scenario() -> None:
        async with members(url, 1) as (b,):
            got = heard(b)
            a = PgBus(connect_arguments(url), KEY)
            await a.start()
            for i in range(100):
                a.send(b.name, ["x", i])
            await a.stop()  # at once: nothing has been sent yet
            await eventually(lambda: len(got) == 100)

    run(scenario)
