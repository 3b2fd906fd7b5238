"""The link runner's pacing on its own (links/runner.py), with an injected clock: the pause
after busy answers (docs/links.md, "Throttling") and the pauses between binds ("Connection
and errors in the log")."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy.exc import DataError

from smsgw.db.engine import Database
from smsgw.events.signals import Signals
from smsgw.links import service
from smsgw.links.receipts import Receipt
from smsgw.links.repository import LinkRecord, PartJob
from smsgw.links.runner import (
    BUSY_FIRST,
    BUSY_LONGEST,
    HELD_SECONDS,
    RECONNECT_FIRST,
    SAME_BASE_AFTER,
    LinkOptions,
    LinkRunner,
    Reconnects,
    Slowdown,
    _refused,
    backoff,
)
from smsgw.links.schemas import TRANSCEIVER
from smsgw.links.service import Outcome, Settled
from smsgw.links.session import Answer, Inbound, Session, Submit
from smsgw.webhooks.hub import OptOutWords

pytestmark = pytest.mark.one_engine("no database")  # conftest.py

#: SMSGW_LINK_RECONNECT_MAX_SECONDS's default.
LONGEST = 60.0


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_window_throttled_together_pauses_once_and_doubles_the_delay_once() -> None:
    """Ten submit_sm out together, all answered busy: one pause of BUSY_FIRST, the next one
    twice as long (before, each of the ten doubled it: 0.5 s became 30 s)."""
    clock = Clock()
    slowdown = Slowdown(clock)
    since = slowdown.pauses  # when the ten went out

    for _ in range(10):
        slowdown.busy(since)
        clock.now += 0.001

    assert slowdown.until == 1000.0 + BUSY_FIRST
    assert slowdown.delay == 2 * BUSY_FIRST
    assert slowdown.left() == pytest.approx(BUSY_FIRST - 0.01)


def test_answers_to_a_window_sent_before_a_pause_do_not_double_it_after_its_end() -> None:
    """A slow carrier's busy answers to the same window may come after its pause ended:
    that pause was their answer already."""
    clock = Clock()
    slowdown = Slowdown(clock)
    since = slowdown.pauses
    slowdown.busy(since)
    clock.now += BUSY_FIRST + 0.1
    assert slowdown.left() == 0

    slowdown.busy(since)

    assert slowdown.left() == 0
    assert slowdown.delay == 2 * BUSY_FIRST


def test_busy_again_after_a_pause_doubles_it_up_to_the_longest() -> None:
    clock = Clock()
    slowdown = Slowdown(clock)
    pauses = []
    for _ in range(10):
        slowdown.busy(slowdown.pauses)  # a part sent after the last pause, answered busy
        pauses.append(slowdown.left())
        clock.now = slowdown.until  # the pause waited out

    assert pauses == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert BUSY_LONGEST == 30


def test_an_accepted_answer_ends_the_pause_and_the_next_starts_from_the_first() -> None:
    clock = Clock()
    slowdown = Slowdown(clock)
    slowdown.busy(slowdown.pauses)
    clock.now += BUSY_FIRST
    slowdown.busy(slowdown.pauses)
    assert slowdown.left() == 2 * BUSY_FIRST

    slowdown.accepted()

    assert slowdown.left() == 0
    assert not slowdown.until  # (the sender's check: no pause in force)
    slowdown.busy(slowdown.pauses)
    assert slowdown.left() == BUSY_FIRST


def test_an_intent_that_could_not_be_recorded_pauses_unless_a_pause_is_in_force() -> None:
    clock = Clock()
    slowdown = Slowdown(clock)
    slowdown.busy()
    assert slowdown.left() == BUSY_FIRST

    clock.now += 0.1
    slowdown.busy()

    assert slowdown.left() == pytest.approx(BUSY_FIRST - 0.1)
    assert slowdown.delay == 2 * BUSY_FIRST


def drawn_from(pauses: list[float], steps: list[float]) -> bool:
    """Whether each pause was drawn from the upper half of its step of the backoff."""
    assert len(pauses) == len(steps)
    return all(step / 2 <= pause <= step for pause, step in zip(pauses, steps, strict=True))


def test_links_of_one_carrier_do_not_reconnect_in_step() -> None:
    """The jitter: 200 draws of one step of the backoff spread over its upper half (a fixed
    pause would put every link of a carrier that went down back on it at once)."""
    pauses = [backoff(3, LONGEST) for _ in range(200)]

    assert drawn_from(pauses, [2.0] * 200)
    assert min(pauses) < 1.25 and max(pauses) > 1.75  # (each side: chance 0.75^200 of not)
    assert len(set(pauses)) > 150


def test_sessions_that_end_at_once_count_as_failed_attempts() -> None:
    """A carrier that accepts each bind and drops the connection at once: the pauses double
    up to the longest, as for binds that fail."""
    clock = Clock()
    reconnects = Reconnects(LONGEST, clock)
    pauses = []
    for _ in range(9):
        reconnects.bound()
        clock.now += 0.05  # dropped at once
        reconnects.ended()
        pauses.append(reconnects.pause())
        clock.now += pauses[-1]

    assert drawn_from(pauses, [0.5, 1, 2, 4, 8, 16, 32, 60, 60]), pauses


def test_a_session_that_stayed_bound_starts_the_backoff_again() -> None:
    clock = Clock()
    reconnects = Reconnects(LONGEST, clock)
    for _ in range(4):  # four failed attempts: the next pause would be 8 s
        reconnects.pause()

    reconnects.bound()
    clock.now += HELD_SECONDS
    reconnects.ended()

    assert drawn_from([reconnects.pause(), reconnects.pause()], [RECONNECT_FIRST, 1])


def test_a_session_that_carried_traffic_starts_the_backoff_again() -> None:
    clock = Clock()
    reconnects = Reconnects(LONGEST, clock)
    for _ in range(4):
        reconnects.pause()

    reconnects.bound()
    reconnects.carried = True  # what the runner sets when a submit_sm is accepted
    clock.now += 1
    reconnects.ended()
    assert drawn_from([reconnects.pause()], [RECONNECT_FIRST])

    reconnects.bound()  # the next session has carried nothing yet
    clock.now += 1
    reconnects.ended()
    assert drawn_from([reconnects.pause()], [1])


def test_a_session_that_ended_unanswered_held_only_if_the_carrier_accepted_a_part() -> None:
    """A carrier that binds and never answers: each session lasts smpp34's 30 s response
    timeout, which counted as a session that held, so the link bound again at once and a
    window of parts failed each time."""
    clock = Clock()
    reconnects = Reconnects(LONGEST, clock)
    for _ in range(4):
        reconnects.pause()

    reconnects.bound()
    clock.now += HELD_SECONDS + 5
    reconnects.ended(unanswered=True)
    assert drawn_from([reconnects.pause()], [RECONNECT_FIRST * 2**4])

    reconnects.bound()
    reconnects.carried = True
    clock.now += HELD_SECONDS + 5
    reconnects.ended(unanswered=True)
    assert drawn_from([reconnects.pause()], [RECONNECT_FIRST])


class AcceptingSession:
    """A session whose carrier accepts every submit_sm."""

    dead = unanswered = False

    async def submit(self, part: Submit) -> Answer:
        return Answer(True, 0, message_id="1")


def a_runner() -> LinkRunner:
    """A runner of a link that uses no database."""
    link = LinkRecord(
        "link-runner-test", 1, "test", "smpp", "127.0.0.1", 2775, "user", "secret", "",
        "TEST", 5, 0, 100, 10, 0, TRANSCEIVER, "new", None, datetime.now(UTC),
    )  # fmt: skip
    options = LinkOptions(1.0, LONGEST, 10, 0.1, OptOutWords(cast(Any, None), None))
    leased = datetime.now(UTC) + timedelta(minutes=1)
    return LinkRunner(cast(Database, None), link, options, Signals(), "test-driver", leased)


def test_an_accepted_submit_sm_marks_the_session_as_held() -> None:
    """The runner tells its reconnects that the session carried traffic."""
    runner = a_runner()
    job = PartJob(1, 1, "ext", "+12025550100", 1, 1, "hello", False)
    runner.reconnects.bound()
    assert not runner.reconnects.carried

    asyncio.run(runner._submit(cast(Session, AcceptingSession()), job, 0))

    assert runner.reconnects.carried


def test_an_mo_that_could_not_be_stored_is_logged_without_its_text_or_sender(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A database error's words quote the statement's values (SQLAlchemy's `[parameters:
    ...]`, PostgreSQL's DETAIL): the log names the error's types and where it was raised."""
    text, sender = "the secret words", "4915112345601"

    async def refused(*args: Any) -> None:
        statement = "INSERT INTO inbox (sender, text) VALUES (?, ?)"
        orig = ValueError(f"DETAIL: Failing row contains ({sender}, {text})")
        raise DataError(statement, (sender, text), orig)

    monkeypatch.setattr(service, "received", refused)
    caplog.set_level(logging.ERROR, logger="smsgw.links")
    mo = Inbound(sender, 1, "TEST", 0, 0, text.encode(), None, None)

    asyncio.run(a_runner()._inbound(mo))

    [record] = caplog.records
    said = caplog.text
    assert said.startswith("ERROR") and record.exc_info is None
    assert "link link-runner-test: an incoming SMS could not be stored, and is lost: " in said
    assert "DataError (builtins.ValueError)" in said and "in refused" in said
    assert text not in said and sender not in said


def receipt(smsc_id: str) -> Receipt:
    return Receipt(smsc_id, "DELIVRD", None)


def test_the_base_of_a_carriers_receipts_is_learnt_from_what_they_matched() -> None:
    """`same_base`: yes after a match as spelled by an id with a hex letter, or after
    SAME_BASE_AFTER by ids of digits; no after a match in the other base, before either. A
    chance match as spelled of a carrier that crosses bases decides nothing alone."""
    runner = a_runner()
    runner._learn_base([receipt("0000000F"), receipt("1A")], {"1A"}, 0)  # 1 digit; loose
    assert runner.same_base is None
    runner._learn_base([receipt("0000001F")], set(), 0)
    assert runner.same_base is True

    runner = a_runner()
    runner._learn_base([receipt("1234")], set(), 0)  # a chance match, maybe
    assert runner.same_base is None
    runner._learn_base([receipt("4660")], {"4660"}, 1)  # found in the other base
    assert runner.same_base is False
    runner._learn_base([receipt("FF")] + [receipt("12")] * SAME_BASE_AFTER, set(), 0)
    assert runner.same_base is False  # decided

    runner = a_runner()
    runner._learn_base([receipt(f"{n:010d}") for n in range(10, 9 + SAME_BASE_AFTER)], set(), 0)
    assert runner.same_base is None
    runner._learn_base([receipt("0000000099")], set(), 0)
    assert runner.same_base is True


def test_only_a_value_the_database_refuses_counts_as_refused() -> None:
    import psycopg
    from sqlalchemy.exc import DBAPIError

    assert _refused(ValueError("Exceeds the limit (4300 digits)"))
    assert _refused(sqlite3.IntegrityError("UNIQUE constraint failed"))
    truncated = psycopg.errors.StringDataRightTruncation("value too long")
    assert _refused(DBAPIError("INSERT", None, truncated))
    assert not _refused(sqlite3.OperationalError("database is locked"))
    assert not _refused(DBAPIError("INSERT", None, psycopg.OperationalError("server closed")))
    assert not _refused(TimeoutError())


def test_recorded_one_by_one_only_what_was_not_recorded_goes_back() -> None:
    """A failure that is not a refusal (the database went away) in the middle of recording
    one by one: what was recorded is not queued again (it would be applied twice), the rest
    is, and the error is raised."""
    runner = a_runner()
    answers: list[Outcome] = [(n, "accepted", f"C{n}", None) for n in (1, 2, 3)]
    calls: list[int] = []

    async def settle(outs: list[Outcome], _receipts: list[Receipt], _loose: set[str]) -> Settled:
        [(key, *_)] = outs
        calls.append(key)
        if key == 2:
            raise sqlite3.IntegrityError("refused")
        if key == 3:
            raise sqlite3.OperationalError("database is locked")
        return Settled(1, [])

    runner._settle = settle  # type: ignore[method-assign]
    with pytest.raises(sqlite3.OperationalError):
        asyncio.run(runner._one_by_one(answers, [(0.0, receipt("R1"))], set()))
    assert calls == [1, 2, 3]
    assert [answer[0] for answer in runner.answers] == [3, 2]
    assert [r.smsc_id for _, r in runner.receipts] == ["R1"]


def test_what_the_database_refuses_alone_twice_is_dropped_and_the_rest_recorded() -> None:
    runner = a_runner()
    answers: list[Outcome] = [(n, "accepted", f"C{n}", None) for n in (1, 2)]

    async def settle(outs: list[Outcome], found: list[Receipt], _loose: set[str]) -> Settled:
        if (outs and outs[0][0] == 2) or (found and found[0].smsc_id == "BAD"):
            raise ValueError("refused")
        return Settled(1, list(found))

    runner._settle = settle  # type: ignore[method-assign]
    settled, dropped = asyncio.run(
        runner._one_by_one(answers, [(0.0, receipt("BAD")), (0.0, receipt("R1"))], set())
    )
    assert settled.events == 2 and settled.unmatched == [receipt("R1")]
    assert dropped == [receipt("BAD")]
    assert runner.answers == [] and runner.receipts == []


def test_a_receipt_that_names_no_part_is_tried_again_less_and_less_often_for_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Tried when it came, then 1, 2, 4, 8, 16 and 32 s later and at 60 s, then dropped with a
    warning: every second for a minute, a carrier whose receipts name nothing of ours (2,000
    at 100 a second, in a probe) cost the link's process a third of a core."""
    runner = a_runner()
    clock = Clock()
    runner.monotonic = clock
    tried: list[float] = []

    async def settle(_outs: list[Outcome], found: list[Receipt], _loose: set[str]) -> Settled:
        tried.extend(clock.now - 1000.0 for _ in found)
        return Settled(0, list(found))  # matched nothing

    runner._settle = settle  # type: ignore[method-assign]
    caplog.set_level(logging.WARNING, logger="smsgw.links")
    runner.receipts.append((clock.now, receipt("NOWHERE")))

    async def each_tenth_of_a_second_for_70_s() -> None:
        for _ in range(700):
            await runner._flush()
            clock.now = round(clock.now + 0.1, 1)

    asyncio.run(each_tenth_of_a_second_for_70_s())
    assert tried == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
    assert runner.orphans == []
    assert [r.getMessage() for r in caplog.records] == [
        "link link-runner-test: a receipt for 'NOWHERE' named no part awaiting one; dropped"
    ]
