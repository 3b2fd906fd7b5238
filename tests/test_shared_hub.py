"""The buses between server processes and the hub they share (events/bus.py, pgbus.py,
shared_hub.py).

Two or three nodes live in one event loop here, each with its own bus (a Bus bound to its own
abstract socket, or a PgBus with its own connections to the test's PostgreSQL database),
exactly as separate processes would have: only the process boundary is left out
(tests/test_workers.py and tests/test_multinode.py run real processes). The hub's tests run
on both buses; tests/test_pgbus.py has PostgreSQL's bus's own.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from smsgw.db.postgres import connect_arguments
from smsgw.events import shared_hub
from smsgw.events.bus import Bus, Cluster, EventBus
from smsgw.events.hub import Event, PhoneEvent
from smsgw.events.pgbus import PgBus
from smsgw.events.shared_hub import SharedHub

pytestmark = pytest.mark.one_engine("they choose their engines themselves")  # conftest.py


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 20))


async def eventually(check: Callable[[], bool], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


NewBus = Callable[[int, int], EventBus]


def local_buses() -> NewBus:
    """Makes the local bus of node `index` of `count`, all of one cluster."""
    name = secrets.token_hex(6)
    return lambda index, count: Bus(Cluster(name, index, count))


@pytest.fixture(params=["local", "postgresql"])
def new_bus(request: pytest.FixtureRequest) -> NewBus:
    """Makes the bus of node `index` of `count`: the local one, or PostgreSQL's."""
    if request.param == "local":
        return local_buses()
    arguments = connect_arguments(request.getfixturevalue("pg_cluster").create_database())
    return lambda _index, _count: PgBus(arguments, b"k" * 32)


@asynccontextmanager
async def nodes(new_bus: NewBus, count: int) -> AsyncIterator[list[SharedHub]]:
    """`count` started hubs of one cluster, stopped at the end."""
    hubs = []
    for index in range(count):
        bus = new_bus(index, count)
        await bus.start()
        hub = SharedHub(bus)
        await hub.start()
        hubs.append(hub)
    try:
        yield hubs
    finally:
        for hub in hubs:
            await hub.stop()
            await hub.bus.stop()


@asynccontextmanager
async def two_buses() -> AsyncIterator[tuple[Bus, Bus]]:
    """A sender (node 0) and a receiver (node 1) of one cluster, closed at the end."""
    name = secrets.token_hex(6)
    sender, receiver = Bus(Cluster(name, 0, 2)), Bus(Cluster(name, 1, 2))
    await sender.start()
    await receiver.start()
    try:
        yield sender, receiver
    finally:
        sender.close()
        receiver.close()


def test_a_phone_held_by_one_node_is_seen_and_reached_from_another(new_bus: NewBus) -> None:
    async def scenario() -> None:
        async with nodes(new_bus, 2) as (a, b):
            stream, only = a.open("phone-1", 7)
            assert only
            await eventually(lambda: b.is_connected("phone-1"))
            assert b.devices_of(7) == {"phone-1"} and b.devices_of(8) == set()
            assert b.connected() == {"phone-1"} and b.stream_count() == 1
            assert b.pick(7, 3) == ["phone-1"]

            delivered = b.publish({"phone-1"}, Event(PhoneEvent.MESSAGE_ENQUEUED))
            assert delivered == 1
            got = await asyncio.wait_for(stream.queue.get(), 2)
            assert got == Event(PhoneEvent.MESSAGE_ENQUEUED)

            a.close("phone-1", 7, stream)
            await eventually(lambda: not b.is_connected("phone-1"))
            assert b.devices_of(7) == set() and b.stream_count() == 0

    run(scenario)


def test_events_keep_their_data_and_reach_every_stream_on_every_node(new_bus: NewBus) -> None:
    async def scenario() -> None:
        async with nodes(new_bus, 3) as (a, b, c):
            on_a, _ = a.open("phone-1", 7)
            on_b, _ = b.open("phone-1", 7)
            await eventually(lambda: c.stream_count() == 2)
            event = Event(PhoneEvent.MESSAGES_EXPORT_REQUESTED, {"since": "x", "until": "y"})
            assert c.publish(["phone-1"], event) == 2
            assert await asyncio.wait_for(on_a.queue.get(), 2) == event
            assert await asyncio.wait_for(on_b.queue.get(), 2) == event
            # A node's own streams get it too, once, and the other node's as well.
            assert a.publish(["phone-1"], Event(PhoneEvent.SETTINGS_UPDATED)) == 2
            assert (await asyncio.wait_for(on_a.queue.get(), 2)).name == "SettingsUpdated"
            assert (await asyncio.wait_for(on_b.queue.get(), 2)).name == "SettingsUpdated"
            assert on_a.queue.empty() and on_b.queue.empty()

    run(scenario)


def test_pick_takes_turns_across_the_phones_of_every_node(new_bus: NewBus) -> None:
    async def scenario() -> None:
        async with nodes(new_bus, 2) as (a, b):
            a.open("phone-a", 7)
            b.open("phone-b", 7)
            await eventually(lambda: a.devices_of(7) == {"phone-a", "phone-b"})
            picked = [a.pick(7, 1)[0] for _ in range(4)]
            assert picked == ["phone-a", "phone-b", "phone-a", "phone-b"]
            # The periodic worker of each process wakes only the phones it holds.
            assert a.pick(7, 2, here_only=True) == ["phone-a"]
            assert b.pick(7, 2, here_only=True) == ["phone-b"]
            assert a.holds("phone-a") and not a.holds("phone-b") and a.is_connected("phone-b")

    run(scenario)


def test_in_a_cluster_every_new_message_tells_a_phone(new_bus: NewBus) -> None:
    """A phone's pull may be served by another process, which would not see it: no new
    message is left to a phone told before (EventHub.pick_for_new coalesces only alone)."""

    async def scenario() -> None:
        async with nodes(new_bus, 2) as (a, b):
            a.open("phone-a", 7)
            b.open("phone-b", 7)
            await eventually(lambda: a.devices_of(7) == {"phone-a", "phone-b"})
            told = [a.pick_for_new(7, cap=10) for _ in range(3)]
            assert told == [["phone-a"], ["phone-b"], ["phone-a"]]

    run(scenario)


def test_a_node_that_falls_silent_is_forgotten_with_its_phones(new_bus: NewBus) -> None:
    async def scenario() -> None:
        async with nodes(new_bus, 2) as (a, b):
            a.open("phone-1", 7)
            await eventually(lambda: b.is_connected("phone-1"))
            await a.stop()  # no more heartbeats, as when its process is killed
            await a.bus.stop()
            later = time.monotonic() + shared_hub.EXPIRY_SECONDS + 1
            b.clock = lambda: later  # the hub's own clock: asyncio's is left alone
            b._expire()
            assert not b.is_connected("phone-1") and b.devices_of(7) == set()

    run(scenario)


def test_a_registry_too_big_for_one_message_arrives_in_parts(
    new_bus: NewBus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Bus, "entries_per_part", 3)
    monkeypatch.setattr(PgBus, "entries_per_part", 3)

    async def scenario() -> None:
        async with nodes(new_bus, 2) as (a, b):
            for i in range(10):
                a.open(f"phone-{i}", i % 2)
            await eventually(lambda: len(b.connected()) == 10)
            assert b.devices_of(0) == {f"phone-{i}" for i in range(0, 10, 2)}

    run(scenario)


def test_a_burst_of_messages_is_coalesced_and_none_is_lost() -> None:
    """Linux queues 10 datagrams per socket by default: a burst must not be cut there."""

    async def scenario() -> None:
        async with two_buses() as (sender, receiver):
            got: list[Any] = []
            receiver.on("x", lambda node, message: got.append((node, message[1])))
            for i in range(5000):
                sender.send(1, ["x", i, "y" * 40])
            await eventually(lambda: len(got) == 5000)
            assert got == [(0, i) for i in range(5000)]
            assert sender.dropped == 0

    run(scenario)


def test_an_event_for_thousands_of_phones_on_another_node_reaches_each(
    new_bus: NewBus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An account with very many phones: the event goes in parts (a datagram is bounded)."""

    async def scenario() -> None:
        async with nodes(new_bus, 2) as (a, b):
            streams = [a.open(f"{i:021d}", 7)[0] for i in range(12_000)]
            await eventually(lambda: b.stream_count() == 12_000)
            event = Event(PhoneEvent.SETTINGS_UPDATED)
            assert b.publish(b.devices_of(7), event) == 12_000
            await eventually(lambda: all(not stream.queue.empty() for stream in streams))
            assert b.bus.dropped == 0

    run(scenario)


def test_a_message_too_big_for_a_datagram_is_dropped_alone() -> None:
    async def scenario() -> None:
        async with two_buses() as (sender, receiver):
            got: list[Any] = []
            receiver.on("x", lambda _node, message: got.append(message[1]))
            sender.send(1, ["x", "before"])
            sender.send(1, ["x", "y" * 300_000])
            sender.send(1, ["x", "after"])
            await eventually(lambda: len(got) == 2)
            assert got == ["before", "after"] and sender.dropped == 1

    run(scenario)


def test_the_same_hint_twice_in_a_row_is_sent_once() -> None:
    async def scenario() -> None:
        async with two_buses() as (sender, receiver):
            got: list[Any] = []
            receiver.on("f", lambda _node, message: got.append(message[1]))
            for user_id in (7, 7, 7, 8, 7):
                sender.send(1, ["f", user_id])
            await eventually(lambda: len(got) >= 3)
            await asyncio.sleep(0.05)
            assert got == [7, 8, 7]

    run(scenario)


def test_a_message_for_a_node_not_started_yet_is_dropped_without_error() -> None:
    async def scenario() -> None:
        name = secrets.token_hex(6)
        lonely = Bus(Cluster(name, 0, 2))
        await lonely.start()
        try:
            lonely.broadcast(["x", 1])
            await asyncio.sleep(0.05)  # the flush ran: nothing raised, nothing is kept
            assert lonely._pending == {1: []}
        finally:
            lonely.close()

    run(scenario)


def test_a_task_is_asked_of_the_node_holding_the_phone(new_bus: NewBus) -> None:
    """An inbox refresh for a phone held elsewhere is done by that node (which marks it sent
    only once the event is in the phone's stream)."""

    async def scenario() -> None:
        async with nodes(new_bus, 2) as (a, b):
            b.open("phone-b", 7)
            await eventually(lambda: a.is_connected("phone-b"))
            asked: list[list[str]] = []
            b.on_ask("exports", asked.append)
            a.ask_holders("exports", ["phone-b", "phone-nowhere"])
            await eventually(lambda: asked == [["phone-b"]])

    run(scenario)


JUNK = (
    b"not json", b"[0,5]", b"[0,[5]]", b"[0,[[]]]", b'[0,[[["x"]]]]', b"[" * 20000,
    b'[9,[["r",1,0,0,[]]]]', b'[1,[["r",1,0,0,[]]]]', b'[0,[["r",1,0,0,[]]]]',
    b'[0,[["p",["x"],"NoSuchEvent",null]]]',
)  # fmt: skip


def test_malformed_or_foreign_datagrams_are_ignored() -> None:
    async def scenario() -> None:
        async with nodes(local_buses(), 2) as (a, b):
            address = b.bus.cluster.address(1)
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rogue:
                for junk in JUNK:
                    rogue.sendto(junk, address)
            a.open("phone-1", 7)  # and the bus still works
            await eventually(lambda: b.is_connected("phone-1"))
            assert b._incoming == {}

    run(scenario)


def test_clusters_of_different_runs_do_not_hear_each_other() -> None:
    async def scenario() -> None:
        async with nodes(local_buses(), 2) as (a, _), nodes(local_buses(), 2) as (_, other_b):
            a.open("phone-1", 7)
            await asyncio.sleep(0.3)
            assert not other_b.is_connected("phone-1")

    run(scenario)
