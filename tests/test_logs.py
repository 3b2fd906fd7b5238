"""GET /logs: the owner's server-side event log (state changes, phones), filtered by time,
scoped to its owner, never holding message text, and pruned past its retention."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.base import table_of
from smsgw.db.engine import UnitConnection, database_for
from smsgw.logs import service as logs
from smsgw.logs.models import LogEntry
from tests.clients import TLS
from tests.conftest import Account, LiveServer, create_account, make_settings, running
from tests.test_phones import Api, _true, eventually, phone, run

SECRET_TEXT = "the secret text of the message"


@pytest.fixture
def quick(tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path / "data", worker_interval_seconds=0.2)
    with running(settings) as live:
        yield live


def entries(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    response = client.get("/logs", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def states_of(found: list[dict[str, Any]], message_id: str) -> list[str]:
    return [
        e["context"]["state"]
        for e in found
        if e["module"] == "messages" and e["context"]["messageId"] == message_id
    ]


def test_the_log_follows_a_message_through_a_phone_and_is_the_owners_alone(
    quick: LiveServer,
) -> None:
    owner, other = quick.create_user("owner"), quick.create_user("other")

    async def scenario() -> None:
        api = Api(quick, owner)
        device = phone(quick, owner)
        await device.start()
        await eventually(lambda: _true(device.sse_opens > 0))
        message_id = await api.send(SECRET_TEXT)
        await api.reaches(message_id, "Delivered")
        await device.stop()
        device_id = device.credentials.id  # type: ignore[union-attr]
        with quick.client(owner) as client:

            def phone_events() -> list[str]:
                return [e["context"]["event"] for e in entries(client) if e["module"] == "devices"]

            await eventually(lambda: _true("disconnected" in phone_events()))
            found = entries(client)
        assert phone_events_of(found, device_id) == ["registered", "connected", "disconnected"]
        assert states_of(found, message_id) == ["Processed", "Sent", "Delivered"]
        first = next(e for e in found if e["module"] == "messages")
        assert set(first) == {"id", "createdAt", "module", "priority", "message", "context"}
        assert first["priority"] == "INFO"
        assert first["context"]["deviceId"] == device_id
        assert first["createdAt"].endswith("Z")
        assert SECRET_TEXT not in str(found) and "+12025550100" not in str(found)
        assert [e["createdAt"] for e in found] == sorted(e["createdAt"] for e in found)
        with quick.client(other) as client:
            assert entries(client) == []

    run(scenario)


def phone_events_of(found: list[dict[str, Any]], device_id: str) -> list[str]:
    return [
        e["context"]["event"]
        for e in found
        if e["module"] == "devices" and e["context"]["deviceId"] == device_id
    ]


def test_from_and_to_select_a_time_window(server: LiveServer, api: httpx.Client) -> None:
    body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "x"}}
    first, second = (api.post("/messages", json=body).json()["id"] for _ in range(2))
    assert api.delete(f"/messages/{first}").status_code == 200
    [entry] = entries(api)
    between = datetime.fromisoformat(entry["createdAt"]) + timedelta(milliseconds=1)
    asyncio.run(asyncio.sleep(0.01))
    assert api.delete(f"/messages/{second}").status_code == 200
    cut = between.isoformat().replace("+00:00", "Z")
    assert states_of(entries(api, to=cut), first) == ["Cancelled"]
    assert states_of(entries(api, to=cut), second) == []
    assert states_of(entries(api, **{"from": cut}), second) == ["Cancelled"]
    assert states_of(entries(api, **{"from": cut}), first) == []
    assert len(entries(api)) == 2


def test_bad_time_windows_are_refused_by_name(api: httpx.Client) -> None:
    wrong = api.get("/logs", params={"from": "yesterday"})
    assert wrong.status_code == 400
    assert wrong.json()["message"].startswith("from:")
    with httpx.Client(base_url=str(api.base_url), verify=TLS) as anonymous:
        assert anonymous.get("/logs").status_code == 401


def test_a_window_from_after_to_is_empty_not_refused(api: httpx.Client) -> None:
    """The schema allows any two instants (schemathesis sent these); the lists of messages
    and of the inbox read such a window as empty too."""
    sent = api.post("/messages", json={"phoneNumbers": ["+12025550100"], "message": "x"})
    assert api.delete(f"/messages/{sent.json()['id']}").status_code == 200
    assert len(entries(api, **{"from": "2000-01-01T00:00:00Z"})) == 1
    backwards = api.get(
        "/logs", params={"from": "2099-01-02T00:00:00Z", "to": "2000-01-01T00:00:00Z"}
    )
    assert backwards.status_code == 200
    assert backwards.json() == []


def test_a_message_that_expires_unclaimed_is_logged_as_failed(quick: LiveServer) -> None:
    owner = quick.create_user("owner")

    async def scenario() -> None:
        api = Api(quick, owner)
        message_id = await api.send("too late", ttl=5)
        await api.reaches(message_id, "Failed")

    run(scenario)
    with quick.client(owner) as client:
        [entry] = entries(client)
    assert entry["priority"] == "WARN"
    assert entry["context"] == {
        "messageId": entry["context"]["messageId"],
        "state": "Failed",
        "error": "TTL expired",
    }


def _seed(settings: Settings, login: str, ages_in_days: list[float]) -> None:
    """An account whose log holds entries of these ages, before the server starts."""
    migrate.upgrade(settings)
    create_account(settings, login, "correct horse battery")

    async def insert_entries() -> None:
        db = database_for(settings)
        now = datetime.now(UTC)
        rows = [
            {"user_id": 1, "created_at": now - timedelta(days=age), "module": "messages",
             "priority": "INFO", "message": f"aged {age}", "context": None}
            for age in ages_in_days
        ]  # fmt: skip
        try:
            async with db.write() as conn:
                await conn.execute(insert(table_of(LogEntry)), rows)
        finally:
            await db.dispose()

    asyncio.run(insert_entries())


def test_entries_past_their_retention_are_pruned_by_the_worker(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "data", event_log_retention_days=2, worker_interval_seconds=0.2
    )
    _seed(settings, "keeper", [5, 3, 1, 0])
    with (
        running(settings) as live,
        live.client(Account("keeper", "correct horse battery")) as client,
    ):

        async def pruned() -> bool:
            return len(entries(client)) == 2

        asyncio.run(eventually(pruned, within=10))
        assert [e["message"] for e in entries(client)] == ["aged 1", "aged 0"]


def write_unit(server: LiveServer, unit: Callable[[UnitConnection], Awaitable[None]]) -> None:
    """Run `unit` as a unit of work on the server's database, from a Database of its own."""

    async def write() -> None:
        db = database_for(server.settings)
        try:
            await db.write_unit(unit)
        finally:
            await db.dispose()

    asyncio.run(write())


def test_an_entry_recorded_in_a_unit_of_work_is_listed(
    server: LiveServer, alice: Account, api: httpx.Client
) -> None:
    async def unit(conn: UnitConnection) -> None:
        context = {"webhookId": "wh1"}
        await logs.record_unit(
            conn, 1, "webhooks", logs.Priority.ERROR, "webhook wh1 failed", context
        )

    write_unit(server, unit)
    [entry] = entries(api)
    assert (entry["module"], entry["priority"]) == ("webhooks", "ERROR")
    assert entry["context"] == {"webhookId": "wh1"}


def test_state_entries_written_together_read_as_each_state_in_its_order(
    server: LiveServer, alice: Account, api: httpx.Client
) -> None:
    """`new_state_rows` and `add_rows_unit` (a batch of reports: a link's answers and
    receipts) write what `GET /logs` lists: Failed as a warning with its error, states of
    one instant in their order, each with its own `reportedAt`."""
    early = datetime(2026, 12, 1, 12, 0, 0, 250000, tzinfo=UTC)
    late = early + timedelta(seconds=3)
    fresh = {"Failed": late, "Sent": early, "Processed": early}

    async def unit(conn: UnitConnection) -> None:
        rows = logs.new_state_rows(1, "msg1", fresh, "dev1", "boom: 0x45", created=late)
        rows += logs.new_state_rows(1, "msg2", {"Delivered": late}, "dev1", "ignored")
        await logs.add_rows_unit(conn, rows)

    write_unit(server, unit)
    found = entries(api)
    assert [(e["message"], e["priority"]) for e in found] == [
        ("message msg1 is Processed", "INFO"),
        ("message msg1 is Sent", "INFO"),
        ("message msg1 is Failed: boom: 0x45", "WARN"),
        ("message msg2 is Delivered", "INFO"),
    ]
    assert found[0]["context"] == {
        "messageId": "msg1", "state": "Processed", "deviceId": "dev1",
        "reportedAt": "2026-12-01T12:00:00.250Z",
    }  # fmt: skip
    assert found[2]["context"] == {
        "messageId": "msg1", "state": "Failed", "deviceId": "dev1", "error": "boom: 0x45",
        "reportedAt": "2026-12-01T12:00:03.250Z",
    }  # fmt: skip
    assert "error" not in found[3]["context"]
    assert found[2]["createdAt"] == "2026-12-01T12:00:03.250Z"
