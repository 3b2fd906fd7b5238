"""A link's SMPP session (links/session.py) against the npm `smpp` simulator
(tests/fakes/smsc-sim.js), on its own: what it receives while its process is busy.

smpp34 queues what the carrier delivers for Python and answers ESME_RMSGQFUL once that queue
is full, with a deliver_sm_resp one byte longer than its command_length says: the SMSC loses
the PDUs' boundaries and the session dies. So the session must read faster than the carrier
delivers even when each turn of its event loop is long (the API's requests share it), not
one deliver_sm a turn; and it must end at once when the carrier drops it, however many
reads await."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from smsgw.links import session as session_module
from smsgw.links.repository import LinkRecord
from smsgw.links.schemas import TRANSCEIVER, TX_RX
from smsgw.links.session import READERS, Session, connections_to, without_nagle
from tests.fakes.smsc import PASSWORD, USER, Smsc, wait_until

#: deliver_sm the simulator sends at once, and how long each turn of the loop is kept busy.
BURST, BUSY_TURN = 1000, 0.005


def link_session(smsc: Smsc, bind_mode: str) -> Session:
    record = LinkRecord(
        "link-session-test", 1, "test", "smpp", "127.0.0.1", smsc.port, USER, PASSWORD, "",
        "TEST", 5, 0, 100, 10, 0, bind_mode, "new", None, datetime.now(UTC),
    )  # fmt: skip
    return Session(record, connect_timeout=10)


@pytest.fixture
def session_of(smsc: Smsc) -> Iterator[Session]:
    yield link_session(smsc, TRANSCEIVER)


def test_a_busy_loop_reads_many_deliver_sm_a_turn(smsc: Smsc, session_of: Session) -> None:
    turns, most = asyncio.run(busy_reading(smsc, session_of))
    # One read at a time hands over at most one a turn (two, when the taker ran first) and
    # took 2,002 turns; 16 hand over about 8 a turn.
    assert most >= 4, f"at most {most} deliver_sm in a turn of the loop"
    assert turns < BURST // 2, f"{turns} turns of the loop for {BURST} deliver_sm"
    assert smsc.binds()["mo_answers"] == {"ok": BURST, "refused": 0}


async def queued(smsc: Smsc, session: Session, count: int) -> None:
    """Open the session and have the simulator deliver `count` MO while the loop is held:
    smpp34 has queued them all (and acknowledged them) before the session's first turn."""
    await session.open()
    assert smsc.mo("4915100001", "hello", count=str(count)) == 1
    wait_until(lambda: smsc.binds()["mo_answers"]["ok"] == count, what="all acknowledged")


async def busy_reading(smsc: Smsc, session: Session) -> tuple[int, int]:
    """The turns of a loop kept busy (BUSY_TURN each) that the session took to hand over
    BURST deliver_sm queued at once, and the most it handed over in one turn."""
    try:
        await queued(smsc, session, BURST)
        received = 0

        async def take() -> None:
            nonlocal received
            while received < BURST:
                inbound = await session.next()
                assert inbound is not None and inbound.short_message == b"hello"
                received += 1

        taking = asyncio.create_task(take())
        turns = most = 0
        while not taking.done():  # each turn of the loop as long as a busy server's
            turns += 1
            before = received
            time.sleep(BUSY_TURN)  # noqa: ASYNC251 (the work of a busy turn, on purpose)
            await asyncio.sleep(0)
            most = max(most, received - before)
            assert turns < 10 * BURST, "the session stopped reading"
        await taking
    finally:
        await session.close()
    return turns, most


def test_closing_hands_over_every_deliver_sm_smpp34_acknowledged(
    smsc: Smsc, session_of: Session
) -> None:
    """Closed (as a stopping link is) with far more queued than its reads and READ_AHEAD
    hold: each reaches the taker before the session's end, none is dropped."""
    assert asyncio.run(closing_with_a_backlog(smsc, session_of)) == BURST


async def closing_with_a_backlog(
    smsc: Smsc, session: Session, count: int = BURST, each: float = 0
) -> int:
    """How many of `count` deliver_sm queued reach a taker that spends `each` seconds on
    each, the session closed as soon as they are queued."""
    await queued(smsc, session, count)
    return await closed_while_taking(session, each)


async def closed_while_taking(session: Session, each: float = 0) -> int:
    """Close the session while a taker that spends `each` seconds on each deliver_sm (a
    commit as it goes) takes them to the end: how many it got."""
    received = 0

    async def take() -> None:
        nonlocal received
        while (inbound := await session.next()) is not None:
            assert inbound.short_message == b"hello"
            received += 1
            await asyncio.sleep(each)

    taking = asyncio.create_task(take())
    await session.close()
    await asyncio.wait_for(taking, 60)
    assert not session.let_go  # (smpp34's Disconnected came behind the backlog)
    return received


def test_closing_waits_for_a_slow_taker_as_long_as_it_takes_some(
    smsc: Smsc, session_of: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A taker slower than UNBIND_SECONDS for the whole backlog (a database write per MO):
    `close` waits while the reads take more, rather than letting go after a fixed time."""
    monkeypatch.setattr(session_module, "UNBIND_SECONDS", 1.0)
    count = 300  # 3 s at 10 ms each
    assert asyncio.run(closing_with_a_backlog(smsc, session_of, count, 0.01)) == count


def test_a_receiver_left_with_a_backlog_when_the_transmitter_ends_hands_it_all_over(
    smsc: Smsc,
) -> None:
    """Bind mode tx_rx: the transmitter's end ends the session; the receiver, unbound by
    `close`, still hands over every deliver_sm smpp34 queued on it."""
    session = link_session(smsc, TX_RX)
    assert asyncio.run(transmitter_lost(smsc, session)) == BURST


async def transmitter_lost(smsc: Smsc, session: Session) -> int:
    await queued(smsc, session, BURST)  # (to the receiver: the simulator's rule)
    assert len(session._readers) == 1 + READERS  # (a transmitter receives nothing)
    assert smsc.drop("transmitter") == 1
    await asyncio.wait_for(session.ended.wait(), 30)
    assert session.lost == "the transmitter session"
    received = await closed_while_taking(session)
    assert smsc.binds()["unbound"] == ["receiver"]
    return received


def test_a_dropped_session_ends_with_every_read_at_once(smsc: Smsc, session_of: Session) -> None:
    asyncio.run(dropped(smsc, session_of))


async def dropped(smsc: Smsc, session: Session) -> None:
    await session.open()
    assert len(session._readers) == READERS  # (the reads awaiting smpp34 at once)
    assert smsc.drop() == 1
    await asyncio.wait_for(session.ended.wait(), 30)
    await session.close()
    assert await asyncio.wait_for(session.next(), 30) is None  # every reader ended
    # smpp34 tells one read of the end; the others end once the session is let go of, not
    # after close's wait of UNBIND_SECONDS for a Disconnected (nor by its cancel).
    assert not session.let_go
    assert all(reader.done() and not reader.cancelled() for reader in session._readers)


def nagle_of(port: int) -> list[bool]:
    """Whether Nagle's algorithm is on, for each of this process's TCP connections to `port`
    (as the kernel has it: TCP_NODELAY unset)."""
    on = []
    for sock in connections_to(port):
        with sock:
            on.append(not sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    return on


@pytest.mark.parametrize("bind_mode", [TRANSCEIVER, TX_RX])
def test_each_bind_goes_without_nagles_algorithm(smsc: Smsc, bind_mode: str) -> None:
    """smpp34 leaves Nagle's algorithm on (a submit_sm written while an earlier write awaits
    its ACK waits for it, up to 40 ms when the SMSC delays its ACKs): each bind turns it off
    on its connection, as soon as it is bound."""
    asyncio.run(nagle_after_bind(link_session(smsc, bind_mode), smsc.port))


async def nagle_after_bind(session: Session, port: int) -> None:
    binds = 2 if session.link.bind_mode == TX_RX else 1
    try:
        await session.open()
        assert nagle_of(port) == [False] * binds
    finally:
        await session.close()


def test_without_nagle_turns_off_only_the_connections_to_the_port() -> None:
    """Connections to another port keep their setting; a listener on the port, and sockets
    of other kinds, are passed over."""
    with contextlib.ExitStack() as stack:
        listeners = [stack.enter_context(socket.create_server(("127.0.0.1", 0))) for _ in "abc"]
        port, other, unused = (listener.getsockname()[1] for listener in listeners)
        mine = [stack.enter_context(socket.create_connection(("127.0.0.1", port))) for _ in "ab"]
        theirs = stack.enter_context(socket.create_connection(("127.0.0.1", other)))
        stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        accepted = [stack.enter_context(listeners[0].accept()[0]) for _ in mine]
        assert nagle_of(port) == [True, True]
        assert without_nagle(port) == 2
        assert nagle_of(port) == [False, False]
        assert nagle_of(other) == [True]
        assert not theirs.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert all(not sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for sock in accepted)
        assert without_nagle(unused) == 0  # (its listener only)
