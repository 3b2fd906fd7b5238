"""Inbox exports in process: closing races between processes, a failing export isolated,
event sizes bounded, old exports pruned; and the phone's event stream never left registered
when what runs before its first frame fails."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from smsgw.api.mobile import events as event_stream
from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.engine import Database, database_for
from smsgw.events.hub import EventHub
from smsgw.inbox import exports, repository
from smsgw.workers.webhooks import PRUNE_EVERY_SECONDS, WebhookWorker
from tests.conftest import database_rows, running
from tests.test_inbox_exports import BASE, export_settings, export_states, posted_settled, refresh
from tests.webhook_support import Api, phone, run, started, until

#: Webhooks registered here are never called: the server stops before its exports settle.
NOWHERE = "http://127.0.0.1:9/hook"


def recorded(
    tmp_path: Path, hooks: list[str], texts: list[str], delivery: str = "Batch", refreshes: int = 1
) -> Settings:
    """A database where a phone posted `texts` and got `refreshes` exports, all still open
    (the server that recorded them has stopped): settle them in process."""
    settings = export_settings(tmp_path / "data", settle=3600)
    with running(settings) as live:
        owner = live.create_user("owner")

        async def scenario() -> None:
            api = Api(live, owner)
            for event in hooks:
                await api.hook(NOWHERE, event)
            device = await started(phone(live, owner), webhooks=5)
            for i, text in enumerate(texts):
                device.receive_sms("+12025550111", text, BASE + timedelta(minutes=i))
            await posted_settled(device, len(texts))
            for _ in range(refreshes):
                await refresh(api, webhookDelivery=delivery)

            async def requested() -> bool:
                return requested_count(settings) == refreshes

            await until(requested)
            await device.stop()
            await api.close()

        run(scenario)
    return settings


def requested_count(settings: Settings) -> int:
    query = "SELECT count(*) FROM inbox_exports WHERE requested_at IS NOT NULL"
    [(count,)] = database_rows(settings, query)
    return int(count)


def outbox_events(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """(event, payload) of every event in the outbox, in the order written."""
    # as text: a JSON column is read back as text on SQLite, decoded on PostgreSQL
    query = "SELECT event, CAST(payload AS TEXT) FROM webhook_events ORDER BY id"
    return [(event, json.loads(payload)) for event, payload in database_rows(settings, query)]


def with_db(settings: Settings, work: Callable[[Database], Awaitable[Any]]) -> Any:
    async def scenario() -> Any:
        db = database_for(settings)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(scenario())


def test_two_processes_settling_at_once_close_an_export_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both read the export as due before either closes it: one wins, one batch is written."""
    settings = recorded(tmp_path, ["sms:batch:received"], ["a", "b", "c"])
    read = repository.settled
    both: list[asyncio.Barrier] = []

    async def read_then_wait(*args: Any) -> list[dict[str, Any]]:
        found = await read(*args)
        await both[0].wait()
        return found

    monkeypatch.setattr(repository, "settled", read_then_wait)

    async def scenario() -> list[int]:
        both.append(asyncio.Barrier(2))
        one, two = database_for(settings), database_for(settings)
        try:
            results = await asyncio.gather(
                exports.settle(one, 0, deliver=True), exports.settle(two, 0, deliver=True)
            )
        finally:
            await one.dispose()
            await two.dispose()
        return sorted(results)

    assert asyncio.run(scenario()) == [0, 1]
    [(event, payload)] = outbox_events(settings)
    assert event == "sms:batch:received"
    assert [m["message"] for m in payload["messages"]] == ["a", "b", "c"]
    assert export_states(settings) == ["done"]


def test_an_export_that_keeps_failing_is_given_up_and_holds_up_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = recorded(tmp_path, ["sms:batch:received"], ["secret text"], refreshes=2)
    emit = exports._emit

    async def failing_first(conn: Any, export: dict[str, Any]) -> None:
        if export["id"] == 1:
            raise RuntimeError("cannot write: secret text")
        await emit(conn, export)

    monkeypatch.setattr(exports, "_emit", failing_first)
    failures: dict[int, int] = {}

    async def three_rounds(db: Database) -> list[int]:
        return [await exports.settle(db, 0, True, failures) for _ in range(3)]

    assert with_db(settings, three_rounds) == [1, 0, 0]  # the second closed at once
    assert export_states(settings) == ["failed", "done"] and failures == {}
    assert [event for event, _ in outbox_events(settings)] == ["sms:batch:received"]
    assert "given up" in caplog.text and "RuntimeError" in caplog.text
    assert "secret text" not in caplog.text


def test_a_round_delivers_even_when_settling_exports_fails(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate.upgrade(settings)

    async def broken(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("database locked")

    monkeypatch.setattr(exports, "settle", broken)
    taken: list[bool] = []

    async def round_of(db: Database) -> None:
        worker = WebhookWorker(settings, db)

        async def take(limit: int | None = None) -> list[Any]:
            taken.append(True)
            return []

        monkeypatch.setattr(worker, "take", take)
        try:
            for _ in range(2):  # two looks as `run` makes them
                await worker._start(set(), settings.webhooks_concurrency)
        finally:
            await worker.close()

    with_db(settings, round_of)
    assert taken == [True, True]


@pytest.mark.parametrize("delivery", ["Batch", "Individual"])
def test_no_payload_is_built_for_events_no_webhook_subscribes_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delivery: str
) -> None:
    """The export asks for SMS; the only webhook wants MMS batches: no inbox row is read."""
    settings = recorded(tmp_path, ["mms:batch:downloaded"], ["a", "b"], delivery)
    reads: list[object] = []
    in_range = repository.in_range

    async def counted(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        reads.append(args)
        return await in_range(*args, **kwargs)

    monkeypatch.setattr(repository, "in_range", counted)
    assert with_db(settings, lambda db: exports.settle(db, 0, deliver=True)) == 1
    assert reads == [] and outbox_events(settings) == []


def test_batches_are_split_by_size_and_rows_read_in_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [f"{i:03d}" + "x" * 20_000 for i in range(40)]
    settings = recorded(tmp_path, ["sms:batch:received"], texts)
    monkeypatch.setattr(exports, "PAGE_SIZE", 7)
    assert with_db(settings, lambda db: exports.settle(db, 0, deliver=True)) == 1
    batches = [payload["messages"] for _, payload in outbox_events(settings)]
    sizes = [len(json.dumps(messages, separators=(",", ":")).encode()) for messages in batches]
    assert len(batches) > 1 and all(size <= exports.BATCH_MAX_BYTES for size in sizes), sizes
    assert [m["message"] for messages in batches for m in messages] == texts  # once, in order
    assert all(len(messages) > 1 for messages in batches[:-1])  # filled up to the cap


def test_exports_no_longer_open_are_pruned_with_the_webhook_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = recorded(tmp_path, ["sms:batch:received"], ["a"], refreshes=3)
    database_rows(settings, "UPDATE inbox_exports SET state = 'expired' WHERE id = 2")
    database_rows(settings, "UPDATE inbox_exports SET last_activity_at = '2100-01-01' WHERE id = 3")
    assert with_db(settings, lambda db: exports.settle(db, 0, deliver=True)) == 1
    assert export_states(settings) == ["done", "expired", "open"]
    database_rows(settings, "UPDATE inbox_exports SET created_at = '2000-01-01 00:00:00.000000'")

    async def prune(db: Database) -> None:
        worker = WebhookWorker(settings, db)
        worker._last_prune = -float(PRUNE_EVERY_SECONDS)
        try:
            await worker.prune()
        finally:
            await worker.close()

    with_db(settings, prune)
    assert export_states(settings) == ["open"]


def stream_context(settings: Settings) -> Any:
    """What the event-stream route needs of the application context (no database use)."""
    return SimpleNamespace(hub=EventHub(), presence=None, settings=settings, db=None)


async def noted(*_args: object) -> None:
    return None


@pytest.mark.parametrize("failure", ["error", "cancelled"])
def test_a_failure_before_the_first_frame_leaves_no_stream_registered(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    async def broken(*_args: object) -> None:
        raise RuntimeError("database gone")

    async def stuck(*_args: object) -> None:
        await asyncio.Event().wait()

    sending: Callable[..., Awaitable[None]] = broken if failure == "error" else stuck
    monkeypatch.setattr(exports, "send_pending", sending)
    monkeypatch.setattr(event_stream.logs, "note_phone", noted)
    context = stream_context(settings)
    device = cast(Any, SimpleNamespace(device_id="phone1", user_id=1))

    async def scenario() -> None:
        opening = asyncio.create_task(event_stream.events(device, context))
        if failure == "error":
            with pytest.raises(RuntimeError):
                await opening
        else:
            await asyncio.sleep(0.05)
            assert context.hub.is_connected("phone1")  # registered while it waits
            opening.cancel()
            with pytest.raises(asyncio.CancelledError):
                await opening
        assert not context.hub.is_connected("phone1") and context.hub.stream_count() == 0

    asyncio.run(scenario())
