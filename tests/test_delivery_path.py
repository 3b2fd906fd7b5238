"""The phones' hot path (issue 15): pulls and state reports as units of group commit.

A report the app repeats (it sends the current snapshot on every state change, so two of
the three reports of a delivered message usually say the same) and a pull that finds
nothing must not write: the database is watched (`watching`) through what changes whenever
a change is committed (SQLite's `PRAGMA data_version`, PostgreSQL's row versions).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import make_url

from smsgw.accounts import service as accounts
from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.engine import database_for
from smsgw.devices import service as devices
from smsgw.domain.states import ProcessingState
from smsgw.events.hub import TOLD_FOR_SECONDS, EventHub
from smsgw.messages import service as messages
from smsgw.routing import service as routing
from smsgw.routing.repository import Phone
from smsgw.routing.service import RecipientReport, Reported, SettledReports, StateReport
from smsgw.webhooks import service as webhooks
from smsgw.webhooks.schemas import WebhookIn
from tests.conftest import database_rows

NUMBER = "+12025550100"
AT = datetime(2026, 7, 14, 3, 11, 12, tzinfo=UTC)


ORDER = [ProcessingState.PENDING, ProcessingState.PROCESSED, ProcessingState.SENT]


def snapshot(ext_id: str, state: ProcessingState) -> StateReport:
    """As the app sends it: the recipient's state and every state the message reached."""
    reached = ORDER[: ORDER.index(state) + 1] if state in ORDER else [*ORDER, state]
    return StateReport(
        ext_id, state, [RecipientReport(NUMBER, state, None)], dict.fromkeys(reached, AT)
    )


def data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


@contextmanager
def watching(settings: Settings) -> Iterator[Callable[[], object]]:
    """A reading of the database that changes whenever another connection commits a change.
    SQLite: `PRAGMA data_version` on a connection kept open. PostgreSQL: each table's row
    count and newest row version (an inserted or updated row carries the id of its
    transaction, `xmin`, higher than any before it; a deleted one leaves the count)."""
    if settings.database_scheme == "sqlite":
        path = make_url(settings.resolved_database_url).database or ""
        with closing(sqlite3.connect(path)) as watch:
            yield lambda: data_version(watch)
        return
    tables = database_rows(
        settings, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    )
    query = " UNION ALL ".join(
        f"SELECT '{name}', count(*), max(xmin::text::bigint) FROM {name}"  # noqa: S608
        for (name,) in tables
    )
    yield lambda: sorted(database_rows(settings, query))


def user_id_of(settings: Settings, login: str) -> int:
    [(user_id,)] = database_rows(settings, "SELECT id FROM users WHERE login = ?", (login,))
    return int(user_id)


async def _scenario(settings: Settings) -> None:
    db = database_for(settings)
    try:
        await accounts.create_user(db, "owner", "correct horse battery")
        user_id = user_id_of(settings, "owner")
        device = await devices.register(db, user_id, "owner", "phone", None, None)
        phone = Phone(device.device_id, user_id, None)
        sent = [
            await messages.send(db, None, user_id, messages.SendCommand([NUMBER], text=f"{i}"))
            for i in range(3)
        ]
        with watching(settings) as version:
            pulled = await routing.pull(db, phone, newest_first=False, cap=2)
            assert [p.record.id for p in pulled.items] == [sent[0].id, sent[1].id]
            assert pulled.claimed == 2

            first = await routing.report(db, phone, [snapshot(sent[0].id, ProcessingState.SENT)])
            assert first == Reported(held=True, freed=1, events=0)
            after_first = version()
            assert await routing.has_work_for(db, phone)  # the third message waits

            # The same snapshot again, then an older one: nothing changes, nothing is written.
            again = await routing.report(db, phone, [snapshot(sent[0].id, ProcessingState.SENT)])
            late = await routing.report(
                db, phone, [snapshot(sent[0].id, ProcessingState.PROCESSED)]
            )
            assert again == late == Reported(held=True, freed=0, events=0)
            assert version() == after_first

            # A message the phone does not hold: ignored, nothing written.
            stranger = await routing.report(
                db, phone, [snapshot("no-such-id", ProcessingState.SENT)]
            )
            assert stranger == Reported(held=False, freed=0, events=0)
            assert version() == after_first

            # A report that moves the state on writes again (Delivered), and frees nothing
            # more: the message had already left Pending.
            done = await routing.report(
                db, phone, [snapshot(sent[0].id, ProcessingState.DELIVERED)]
            )
            assert done == Reported(held=True, freed=0, events=0)
            assert version() != after_first
            record = await messages.get(db, user_id, sent[0].id)
            assert record.state == ProcessingState.DELIVERED
            assert set(record.states) == {"Pending", "Processed", "Sent", "Delivered"}

            # A pull with no room (cap 0) and nothing held claims nothing and writes
            # nothing; the phone's next one, with room again, claims the third message.
            other = Phone("someone-else", user_id, None)
            before = version()
            assert await routing.pull(db, other, newest_first=False, cap=0) == routing.Pull([], 0)
            assert version() == before
            again_pulled = await routing.pull(db, phone, newest_first=False, cap=2)
            assert {p.record.id for p in again_pulled.items} == {sent[1].id, sent[2].id}
            assert again_pulled.claimed == 1
            assert version() != before

            # A cancel the phone confirms frees room under its cap too.
            assert (await messages.cancel(db, user_id, sent[1].id)).state == "Cancelling"
            cancelled = await routing.report(
                db, phone, [snapshot(sent[1].id, ProcessingState.CANCELLED)]
            )
            assert cancelled == Reported(held=True, freed=1, events=0)
    finally:
        await db.dispose()


def test_reports_and_pulls_that_change_nothing_write_nothing(settings: Settings) -> None:
    migrate.upgrade(settings)
    asyncio.run(_scenario(settings))


async def _settled_scenario(settings: Settings) -> None:
    db = database_for(settings)
    units = 0
    write_unit = db.write_unit

    async def counted(work: object, **options: Any) -> object:
        nonlocal units
        units += 1
        return await write_unit(work, **options)  # type: ignore[arg-type]

    db.write_unit = counted  # type: ignore[method-assign, assignment]
    settled = SettledReports()
    try:
        await accounts.create_user(db, "owner", "correct horse battery")
        user_id = user_id_of(settings, "owner")
        device = await devices.register(db, user_id, "owner", "phone", None, None)
        other_device = await devices.register(db, user_id, "owner", "other", None, None)
        phone = Phone(device.device_id, user_id, None)
        other = Phone(other_device.device_id, user_id, None)
        sent = await messages.send(db, None, user_id, messages.SendCommand([NUMBER], text="x"))
        await routing.pull(db, phone, newest_first=False, cap=2)

        async def report(by: Phone, state: ProcessingState) -> tuple[Reported, int]:
            before = units
            done = await routing.report(db, by, [snapshot(sent.id, state)], settled=settled)
            return done, units - before

        # Not settled yet: a repeat of Sent is applied (and changes nothing) each time.
        assert await report(phone, ProcessingState.SENT) == (Reported(True, 1, 0), 1)
        assert await report(phone, ProcessingState.SENT) == (Reported(True, 0, 0), 1)
        # Delivered settles it: the same snapshot again, as the app sends it, takes no unit.
        assert await report(phone, ProcessingState.DELIVERED) == (Reported(True, 0, 0), 1)
        assert await report(phone, ProcessingState.DELIVERED) == (Reported(False, 0, 0), 0)
        assert await report(phone, ProcessingState.DELIVERED) == (Reported(False, 0, 0), 0)
        # Another snapshot of it, or the same one from another phone, is applied (and
        # changes nothing: final states stay, the other phone does not hold it).
        assert await report(phone, ProcessingState.FAILED) == (Reported(True, 0, 0), 1)
        assert await report(other, ProcessingState.DELIVERED) == (Reported(False, 0, 0), 1)
        record = await messages.get(db, user_id, sent.id)
        assert record.state == ProcessingState.DELIVERED
        assert record.recipients[0].state == ProcessingState.DELIVERED

        # The app's three reports of a message delivered at once arrive together: the
        # first is applied, the others wait for it and take no unit of their own.
        quick = await messages.send(db, None, user_id, messages.SendCommand([NUMBER], text="y"))
        await routing.pull(db, phone, newest_first=False, cap=2)
        before = units
        together = await asyncio.gather(
            *(
                routing.report(
                    db, phone, [snapshot(quick.id, ProcessingState.DELIVERED)], settled=settled
                )
                for _ in range(3)
            )
        )
        assert units - before == 1
        assert sorted(together, key=lambda r: r.held) == [
            Reported(False, 0, 0), Reported(False, 0, 0), Reported(True, 1, 0)
        ]  # fmt: skip
        assert (await messages.get(db, user_id, quick.id)).state == ProcessingState.DELIVERED

        # When the one in flight fails, the one that waited for it is applied all the same.
        failing = await messages.send(db, None, user_id, messages.SendCommand([NUMBER], text="z"))
        await routing.pull(db, phone, newest_first=False, cap=2)
        applied = db.write_unit

        async def fails_once(work: object, **options: Any) -> object:
            db.write_unit = applied  # type: ignore[method-assign]
            await asyncio.sleep(0)
            raise RuntimeError("the disk is full")

        db.write_unit = fails_once  # type: ignore[method-assign, assignment]
        first, second = await asyncio.gather(
            *(
                routing.report(
                    db, phone, [snapshot(failing.id, ProcessingState.DELIVERED)], settled=settled
                )
                for _ in range(2)
            ),
            return_exceptions=True,
        )
        assert isinstance(first, RuntimeError)
        assert second == Reported(True, 1, 0)
        assert (await messages.get(db, user_id, failing.id)).state == ProcessingState.DELIVERED
    finally:
        await db.dispose()


def test_a_settled_messages_repeated_report_takes_no_unit_of_work(settings: Settings) -> None:
    migrate.upgrade(settings)
    asyncio.run(_settled_scenario(settings))


def test_settled_reports_are_kept_per_phone_and_bounded() -> None:
    settled = SettledReports(size=2)
    first, second, third = (snapshot(f"m{i}", ProcessingState.DELIVERED) for i in range(3))
    settled.add("phone", first)
    assert settled.known("phone", first)
    assert not settled.known("other", first)
    assert not settled.known("phone", snapshot("m0", ProcessingState.FAILED))
    settled.add("phone", second)
    settled.add("phone", third)  # the oldest goes
    assert not settled.known("phone", first)
    assert settled.known("phone", second) and settled.known("phone", third)


def test_a_burst_of_new_messages_tells_one_phone_per_pull_it_can_fill() -> None:
    hub = EventHub()
    now = [100.0]
    hub.clock = lambda: now[0]
    streams = {phone: hub.open(phone, 7)[0] for phone in ("a", "b", "c")}
    # The first message tells a phone; the next ones, up to its cap of 3, are left to the
    # pull it is about to make; the fourth tells the next phone in turn.
    told = [hub.pick_for_new(7, cap=3) for _ in range(5)]
    assert told == [["a"], [], [], ["b"], []]
    # Once a phone pulls, what is stored from then on tells a phone again; the pull learns
    # how many new messages were left to it.
    assert hub.pulling(7, "a") == 3
    assert hub.pulling(7, "b") == 2
    assert hub.pulling(7, "b") == 0
    assert hub.pick_for_new(7, cap=3) == ["c"]
    # A phone told long ago that never pulled (gone quiet) no longer holds messages back.
    now[0] += TOLD_FOR_SECONDS + 0.1
    assert hub.pick_for_new(7, cap=3) == ["a"]
    # Another owner's phones are apart.
    hub.open("z", 8)
    assert hub.pick_for_new(8, cap=3) == ["z"]
    assert hub.pick_for_new(7, cap=3) == []
    # A phone whose stream closed takes nothing more.
    hub.close("a", 7, streams["a"])
    assert hub.pick_for_new(7, cap=3) in (["b"], ["c"])


def test_a_phone_that_goes_away_with_messages_left_to_it_tells_another() -> None:
    hub = EventHub()
    streams = {phone: hub.open(phone, 7)[0] for phone in ("a", "b")}
    assert hub.pick_for_new(7, cap=3) == ["a"]
    assert hub.pick_for_new(7, cap=3) == []
    hub.close("a", 7, streams["a"])
    frame = streams["b"].queue.get_nowait()
    assert frame is not None and frame.name == "MessageEnqueued"
    assert hub.pick_for_new(7, cap=3) == ["b"]  # "a" holds nothing back any more


def _rows_of(settings: Settings, user_id: int, ext_ids: list[str]) -> list[object]:
    """What reports leave behind for these messages, in their order, without row ids."""
    found: list[object] = []
    for ext_id in ext_ids:
        [(key, state)] = database_rows(
            settings, "SELECT id, state FROM messages WHERE ext_id = ?", (ext_id,)
        )
        recipients = database_rows(
            settings,
            "SELECT phone_number, state, error FROM recipients WHERE message_id = ?"
            " ORDER BY position",
            (key,),
        )
        history = database_rows(
            settings, "SELECT state FROM message_states WHERE message_id = ? ORDER BY state", (key,)
        )
        events = database_rows(
            settings,
            "SELECT event, dedupe_key FROM webhook_events WHERE user_id = ? AND dedupe_key LIKE ?"
            " ORDER BY id",
            (user_id, f"%{ext_id}%"),
        )
        log = database_rows(
            settings,
            "SELECT priority, message FROM event_log WHERE user_id = ? AND message LIKE ?"
            " ORDER BY id",
            (user_id, f"message {ext_id} %"),
        )
        found.append((state, recipients, history, events, log))
    return [
        tuple(str(v).replace(ext_id, "X") for v in row)
        for ext_id, row in zip(ext_ids, found, strict=True)
    ]


def _batch(ext_ids: list[str], numbers: list[str]) -> list[StateReport]:
    """Reports of every kind on four messages (the last with two recipients), one of them
    twice (stale after the first), and one for a message the phone does not hold."""
    a, b, c, d = ext_ids
    two = [RecipientReport(numbers[0], ProcessingState.SENT, None)]
    two.append(RecipientReport(numbers[1], ProcessingState.FAILED, "refused"))
    return [
        snapshot(a, ProcessingState.DELIVERED),
        StateReport(
            b,
            ProcessingState.FAILED,
            [RecipientReport(NUMBER, ProcessingState.FAILED, "the SMSC refused it")],
            {},
        ),
        snapshot(c, ProcessingState.SENT),
        StateReport(d, ProcessingState.FAILED, two, {ProcessingState.SENT: AT}),
        snapshot("no-such-id", ProcessingState.SENT),
        snapshot(c, ProcessingState.PROCESSED),  # older than what came before: changes nothing
    ]


async def _batch_scenario(settings: Settings) -> None:
    db = database_for(settings)
    try:
        await accounts.create_user(db, "owner", "correct horse battery")
        user_id = user_id_of(settings, "owner")
        for event in ("sms:sent", "sms:delivered", "sms:failed"):
            hook = WebhookIn(url="https://hooks.example.net/in", event=event)
            await webhooks.register(db, user_id, hook, allow_private=False)
        numbers = [NUMBER, "+12025550111"]
        results, rows = [], []
        for name in ("together", "apart"):
            device = await devices.register(db, user_id, "owner", name, None, None)
            phone = Phone(device.device_id, user_id, None)
            commands = [messages.SendCommand([NUMBER], text=f"{i}") for i in range(3)]
            commands.append(messages.SendCommand(numbers, text="two"))
            sent = [await messages.send(db, None, user_id, command) for command in commands]
            ext_ids = [record.id for record in sent]
            await routing.pull(db, phone, newest_first=False, cap=10)
            batch = _batch(ext_ids, numbers)
            if name == "together":
                # Six snapshots, one of them a second one of a message: applied one by one.
                results.append(await routing.report(db, phone, batch))
                results.append(await routing.report(db, phone, batch[:5]))  # the batch path
            else:
                done = [await routing.report(db, phone, [item]) for item in batch]
                results.append(
                    Reported(
                        any(r.held for r in done),
                        sum(r.freed for r in done),
                        sum(r.events for r in done),
                    )
                )
            rows.append(_rows_of(settings, user_id, ext_ids))
        # One webhook event per recipient and state it reached (d: one Sent, one Failed).
        assert results[0] == results[2] == Reported(held=True, freed=4, events=6)
        assert results[1] == Reported(held=True, freed=0, events=0)  # again: nothing new
        assert rows[0] == rows[1]
        a, b, c, d = rows[0]
        assert a[0] == "Delivered" and b[0] == "Failed" and c[0] == "Sent" and d[0] == "Sent"
        assert "the SMSC refused it" in b[1] and "refused" in d[1]
    finally:
        await db.dispose()


def test_a_batch_of_reports_does_what_they_do_one_by_one(settings: Settings) -> None:
    """routing.report applies several snapshots with their reads and writes made together
    (`_apply_many`): the same states, errors, history, log entries and webhook events (one
    per recipient and state) as reporting them one at a time, and nothing again when the
    batch comes twice."""
    migrate.upgrade(settings)
    asyncio.run(_batch_scenario(settings))
