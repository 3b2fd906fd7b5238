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
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from smsgw.links.repository import LinkRecord
from smsgw.links.session import READERS, Session
from tests.fakes.smsc import PASSWORD, USER, Smsc, wait_until

#: deliver_sm the simulator sends at once, and how long each turn of the loop is kept busy.
BURST, BUSY_TURN = 1000, 0.005


@pytest.fixture
def session_of(smsc: Smsc) -> Iterator[Session]:
    record = LinkRecord(
        "link-session-test", 1, "test", "smpp", "127.0.0.1", smsc.port, USER, PASSWORD, "",
        "TEST", 5, 0, 100, 10, 0, "transceiver", "new", None, datetime.now(UTC),
    )  # fmt: skip
    yield Session(record, connect_timeout=10)


def test_a_busy_loop_reads_many_deliver_sm_a_turn(smsc: Smsc, session_of: Session) -> None:
    turns = asyncio.run(busy_reading(smsc, session_of))
    # One read at a time took a turn (or two) per deliver_sm: 1,000 turns or more.
    assert turns < BURST // 4, f"{turns} turns of the loop for {BURST} deliver_sm"
    assert smsc.binds()["mo_answers"] == {"ok": BURST, "refused": 0}


async def busy_reading(smsc: Smsc, session: Session) -> int:
    """The turns of a loop kept busy (BUSY_TURN each) that the session took to hand over
    BURST deliver_sm queued at once."""
    await session.open()
    try:
        # The loop held while the simulator delivers: smpp34 has queued them all (and
        # acknowledged them) before the session's first turn.
        assert smsc.mo("4915100001", "hello", count=str(BURST)) == 1
        wait_until(lambda: smsc.binds()["mo_answers"]["ok"] == BURST, what="all acknowledged")
        received = 0

        async def take() -> None:
            nonlocal received
            while received < BURST:
                inbound = await session.next()
                assert inbound is not None and inbound.short_message == b"hello"
                received += 1

        taking = asyncio.create_task(take())
        turns = 0
        while not taking.done():  # each turn of the loop as long as a busy server's
            turns += 1
            time.sleep(BUSY_TURN)  # noqa: ASYNC251 (the work of a busy turn, on purpose)
            await asyncio.sleep(0)
            assert turns < 10 * BURST, "the session stopped reading"
        await taking
    finally:
        await session.close()
    return turns


def test_a_dropped_session_ends_with_every_read_at_once(smsc: Smsc, session_of: Session) -> None:
    asyncio.run(dropped(smsc, session_of))


async def dropped(smsc: Smsc, session: Session) -> None:
    await session.open()
    assert len(session._readers) == READERS  # (the reads awaiting smpp34 at once)
    assert smsc.drop() == 1
    await asyncio.wait_for(session.ended.wait(), 30)
    await session.close()
    assert await asyncio.wait_for(session.next(), 30) is None  # every reader ended
    # Not after the safeguard's 5 s (links/session.py UNBIND_SECONDS): smpp34 tells one
    # read of the end; the others end when the session is let go.
    assert all(reader.done() and not reader.cancelled() for reader in session._readers)
