"""The inbox: received SMS and data SMS stored per owner and phone, listed with the
upstream local API's filters, and replayed by phones on request without duplicates."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, running
from tests.fakes.phone_webhooks import InboxSms
from tests.fakes.receiver import Receiver
from tests.webhook_support import (
    Api,
    drained,
    eventually,
    export_count,
    hub_settings,
    phone,
    run,
    started,
    until,
)


@pytest.fixture
def hub_server(tmp_path: Path) -> Iterator[LiveServer]:
    with running(hub_settings(tmp_path / "data")) as live:
        yield live


def test_received_messages_are_listed_with_filters(hub_server: LiveServer) -> None:
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        one = await started(phone(hub_server, owner), webhooks=5)
        two = await started(phone(hub_server, owner), webhooks=5)
        base = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        for i in range(3):
            one.receive_sms("+12025550111", f"hello {i}", received_at=base + timedelta(hours=i))
        one.receive_data_sms("+12025550112", b"\x01\x02")
        two.receive_sms("+12025550113", "from two", received_at=base + timedelta(days=1))

        async def all_stored() -> bool:
            return (await api.inbox())[1] == 5

        await until(all_stored)
        items, total = await api.inbox(type="SMS")
        assert total == 4 and [i["contentPreview"] for i in items] == [
            "from two",
            "hello 2",
            "hello 1",
            "hello 0",
        ]  # newest first
        first = items[-1]
        assert first["type"] == "SMS" and first["sender"] == "+12025550111"
        assert first["message"] == "hello 0" and first["createdAt"] == "2026-03-01T12:00:00.000Z"
        assert first["deviceId"] == one.credentials.id  # type: ignore[union-attr]
        [data], _ = await api.inbox(type="DATA_SMS")
        assert base64.b64decode(data["data"]) == b"\x01\x02"
        page, total = await api.inbox(type="SMS", limit=2, offset=1)
        assert total == 4 and [i["message"] for i in page] == ["hello 2", "hello 1"]
        mine, total = await api.inbox(deviceId=two.credentials.id)  # type: ignore[union-attr]
        assert total == 1 and mine[0]["message"] == "from two"
        window, total = await api.inbox(
            **{"from": "2026-03-01T12:30:00Z", "to": "2026-03-01T14:00:00Z"}
        )
        assert total == 2 and [i["message"] for i in window] == ["hello 2", "hello 1"]
        for device in (one, two):
            await device.stop()
        await api.close()

    run(scenario)


def test_a_refresh_replays_the_phones_inbox_without_duplicates(hub_server: LiveServer) -> None:
    """An app older than 1.65.2 replays everything in range: smsgw keeps each message once,
    and the user's webhook hears of those it never had once (and, when asked for Individual
    delivery, of the known ones again)."""
    owner = hub_server.create_user("owner")
    receiver = Receiver().start()

    async def scenario() -> None:
        api = Api(hub_server, owner)
        await api.hook(receiver.url, "sms:received")
        device = await started(phone(hub_server, owner, skip_processed_on_export=False), webhooks=5)
        device.receive_sms("+12025550111", "live one")
        device.receive_sms("+12025550111", "live two")
        earlier = datetime.now(UTC) - timedelta(days=2)  # arrived while smsgw knew nothing
        device.inbox.append(InboxSms("f" * 32, "+12025550119", "missed", None, earlier))
        await eventually(lambda: len(receiver.delivered()) == 2)
        body = {
            "since": (earlier - timedelta(hours=1)).isoformat(),
            "until": datetime.now(UTC).isoformat(),
        }
        # First through upstream's deprecated name (Individual delivery), then the same
        # request again: the phone's replay of the first may land before the second export
        # is made, and a message new to smsgw is never stored before the Individual one.
        for path in ("/messages/inbox/export", "/inbox/refresh"):
            response = await api.client.post(path, json=body)
            assert response.status_code == 202, response.text
            assert response.headers.get("Deprecation") == ("true" if "export" in path else None)
        await eventually(lambda: len(receiver.delivered()) == 3)
        await eventually(lambda: sum(e == "sms:received" for e, _ in device.webhook_posts) == 8)
        await until(drained(hub_server.settings))
        items, total = await api.inbox()
        assert total == 3 and sorted(i["message"] for i in items) == [
            "live one",
            "live two",
            "missed",
        ]
        # The missed one went out once, when first stored; the deprecated export means
        # Individual delivery, so the two known before it were sent again once it settled.
        assert sorted(r.json()["payload"]["message"] for r in receiver.requests) == [
            "live one",
            "live one",
            "live two",
            "live two",
            "missed",
        ]
        [(_event, data)] = [e for e in device.events if e[0] == "MessagesExportRequested"][:1]
        assert data["triggerWebhooks"] == "true" and "since" in data and "until" in data
        await device.stop()
        await api.close()

    try:
        run(scenario)
    finally:
        receiver.stop()


def test_a_refresh_reaches_only_the_named_phone_of_the_caller(hub_server: LiveServer) -> None:
    owner = hub_server.create_user("owner")
    other = hub_server.create_user("other")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        mine = await started(phone(hub_server, owner), webhooks=5)
        also_mine = await started(phone(hub_server, owner), webhooks=5)
        theirs = await started(phone(hub_server, other), webhooks=5)
        now = datetime.now(UTC)
        body = {"deviceId": mine.credentials.id, "since": (now - timedelta(days=1)).isoformat(),  # type: ignore[union-attr]
                "until": now.isoformat(), "messageTypes": ["SMS"]}  # fmt: skip
        assert (await api.client.post("/inbox/refresh", json=body)).status_code == 202
        await eventually(lambda: any(e == "MessagesExportRequested" for e, _ in mine.events))
        [data] = [d for e, d in mine.events if e == "MessagesExportRequested"]
        assert data["messageTypes"] == "SMS"
        other_api = Api(hub_server, other)
        assert (await other_api.client.post("/inbox/refresh", json=body)).status_code == 202
        assert export_count(hub_server.settings) == 1  # nothing recorded: nothing to send
        assert len([e for e, _ in mine.events if e == "MessagesExportRequested"]) == 1
        for device in (also_mine, theirs):
            assert all(e != "MessagesExportRequested" for e, _ in device.events)
        for device in (mine, also_mine, theirs):
            await device.stop()
        await api.close()
        await other_api.close()

    run(scenario)


def test_the_inbox_belongs_to_its_owner(hub_server: LiveServer) -> None:
    owner = hub_server.create_user("owner")
    other = hub_server.create_user("other")

    async def scenario() -> None:
        api, other_api = Api(hub_server, owner), Api(hub_server, other)
        device = await started(phone(hub_server, owner), webhooks=5)
        device.receive_sms("+12025550111", "private")

        async def stored() -> bool:
            return (await api.inbox())[1] == 1

        await until(stored)
        assert await other_api.inbox() == ([], 0)
        assert await other_api.inbox(deviceId=device.credentials.id) == ([], 0)  # type: ignore[union-attr]
        await device.stop()
        await api.close()
        await other_api.close()

    run(scenario)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": 2**63}, "offset"),  # past SQLite's 64-bit OFFSET: was a 500
        ({"type": "FAX"}, "type"),
        ({"from": "yesterday"}, "from"),
        ({"to": "0.5"}, "to"),
        ({"to": "2026-01-01T00:00:00"}, "to"),  # no zone: ambiguous
    ],
)
def test_bad_inbox_queries_get_a_400_naming_the_parameter(
    shared_api: httpx.Client, params: dict[str, str | int], fragment: str
) -> None:
    response = shared_api.get("/inbox", params=params)
    assert response.status_code == 400 and fragment in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"until": "2026-01-02T00:00:00Z"}, "since"),
        ({"since": 0, "until": "2026-01-02T00:00:00Z"}, "since"),
        (
            {
                "since": "2026-01-01T00:00:00Z",
                "until": "2026-01-02T00:00:00Z",
                "triggerWebhooks": 0,
            },
            "triggerWebhooks",
        ),
        ({"since": "2026-01-03T00:00:00Z", "until": "2026-01-02T00:00:00Z"}, "since must not"),
        (
            {"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z", "messageTypes": []},
            "messageTypes",
        ),
        (
            {
                "since": "2026-01-01T00:00:00Z",
                "until": "2026-01-02T00:00:00Z",
                "messageTypes": ["FAX"],
            },
            "messageTypes",
        ),
    ],
)
def test_bad_refresh_requests_get_a_400(
    shared_api: httpx.Client, body: dict[str, object], fragment: str
) -> None:
    response = shared_api.post("/inbox/refresh", json=body)
    assert response.status_code == 400 and fragment in response.json()["message"], response.text


def test_an_empty_inbox_lists_nothing(api: httpx.Client) -> None:
    response = api.get("/inbox")
    assert response.status_code == 200 and response.json() == []
    assert response.headers["X-Total-Count"] == "0"
    assert api.get("/inbox", params={"offset": 2**63 - 1}).json() == []  # the largest offset
