"""Phones end to end: simulated SMS Gateway for Android phones through a real running smsgw."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from smsgw.domain import clock
from tests.clients import TLS
from tests.conftest import Account, LiveServer
from tests.fakes.phone import SimulatedPhone
from tests.fakes.phone_http import HTTPStatusError

MOBILE = "/api/mobile/v1"


@pytest.fixture
def owner(fleet_server: LiveServer) -> Account:
    return fleet_server.create_user("owner")


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


class Api:
    """The 3rd-party API as an application uses it."""

    def __init__(self, server: LiveServer, account: Account) -> None:
        self.client = httpx.AsyncClient(
            base_url=server.api, auth=(account.login, account.password), timeout=20, verify=TLS
        )

    async def send(self, text: str = "hi", **extra: Any) -> str:
        body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": text}} | extra
        response = await self.client.post("/messages", json=body)
        assert response.status_code == 200, response.text
        message_id: str = response.json()["id"]
        return message_id

    async def state(self, message_id: str) -> dict[str, Any]:
        result: dict[str, Any] = (await self.client.get(f"/messages/{message_id}")).json()
        return result

    async def states(self) -> list[str]:
        response = await self.client.get("/messages", params={"limit": 100})
        return [item["state"] for item in response.json()]

    async def reaches(self, message_id: str, state: str) -> None:
        async def check() -> bool:
            return (await self.state(message_id))["state"] == state

        await eventually(check)


def phone(server: LiveServer, account: Account, **options: Any) -> SimulatedPhone:
    return SimulatedPhone(server.url + MOBILE, login=(account.login, account.password), **options)


def test_a_message_goes_from_the_api_to_delivered_through_a_phone(
    fleet_server: LiveServer, owner: Account
) -> None:
    async def scenario() -> None:
        api = Api(fleet_server, owner)
        device = phone(fleet_server, owner)
        await device.start()
        await eventually(lambda: _true(device.sse_opens > 0))
        message_id = await api.send("Hello!")
        await api.reaches(message_id, "Delivered")
        state = await api.state(message_id)
        assert state["deviceId"] == device.credentials.id  # type: ignore[union-attr]
        assert state["recipients"] == [
            {"phoneNumber": "+12025550100", "state": "Delivered", "error": None}
        ]
        assert {"Pending", "Processed", "Sent", "Delivered"} <= set(state["states"])
        assert device.sent == [(message_id, "+12025550100")]
        assert ("WebhooksUpdated", None) in device.events
        assert device.settings == {"gateway": {"notification_channel": "SSE_ONLY"}}
        await device.stop()

    run(scenario)


async def _true(value: bool) -> bool:
    return value


def test_two_phones_share_a_hundred_messages_and_neither_is_idle(
    fleet_server: LiveServer, owner: Account
) -> None:
    async def scenario() -> None:
        api = Api(fleet_server, owner)
        phones = [phone(fleet_server, owner, send_delay=0.01) for _ in range(2)]
        for device in phones:
            await device.start()
        await eventually(lambda: _true(all(p.sse_opens for p in phones)))
        ids = [await api.send(f"m{i}") for i in range(100)]

        async def all_delivered() -> bool:
            return (await api.states()).count("Delivered") == 100

        await eventually(all_delivered, within=40)
        sent = [m for p in phones for m, _ in p.sent]
        assert sorted(sent) == sorted(ids)  # every message sent exactly once
        for device in phones:
            assert len(device.sent) >= 20, [len(p.sent) for p in phones]
        for device in phones:
            await device.stop()

    run(scenario)


def test_a_killed_phones_unreported_messages_go_to_the_other_phone(
    fleet_server: LiveServer, owner: Account
) -> None:
    async def scenario() -> None:
        api = Api(fleet_server, owner)
        ids = [await api.send(f"m{i}") for i in range(5)]
        # A phone that polls (no event stream): one pull takes all five; it hands the first
        # to the radio, reports it, and dies before it gets any further.
        dying = phone(fleet_server, owner, sse=False, pull_interval=1e6, send_delay=3600)
        await dying.start()
        await eventually(lambda: _true(len(dying.messages) == 5 and len(dying.sent) == 1))
        [(in_radio, _)] = dying.sent
        await api.reaches(in_radio, "Processed")
        await dying.kill()
        survivor = phone(fleet_server, owner)
        await survivor.start()

        async def others_delivered() -> bool:
            return (await api.states()).count("Delivered") == 4

        await eventually(others_delivered, within=30)
        survivor_id = survivor.credentials.id  # type: ignore[union-attr]
        for message_id in ids:
            state = await api.state(message_id)
            if message_id == in_radio:  # reported by the dead phone: never sent elsewhere
                assert state["state"] == "Processed"
                assert state["deviceId"] == dying.credentials.id  # type: ignore[union-attr]
            else:
                assert state["deviceId"] == survivor_id
        assert sorted(m for m, _ in survivor.sent) == sorted(set(ids) - {in_radio})
        await survivor.stop()

    run(scenario)


def test_a_phone_that_reported_pending_keeps_its_message(
    fleet_server: LiveServer, owner: Account
) -> None:
    async def scenario() -> None:
        api = Api(fleet_server, owner)
        holder = phone(fleet_server, owner, paused=True)
        await holder.start()
        await eventually(lambda: _true(holder.sse_opens > 0))
        message_id = await api.send("mine")
        await eventually(lambda: _true(message_id in holder.messages))
        await holder.pull()  # seen again: the app re-reports Pending, meaning "I have it"
        await api.reaches(message_id, "Processed")
        await holder.kill()
        other = phone(fleet_server, owner)
        await other.start()
        await asyncio.sleep(3)  # past the release delay
        assert other.sent == []
        assert (await api.state(message_id))["deviceId"] == holder.credentials.id  # type: ignore[union-attr]
        await other.stop()

    run(scenario)


def test_a_returning_phone_drops_what_was_released_from_it(
    fleet_server: LiveServer, owner: Account
) -> None:
    async def scenario() -> None:
        api = Api(fleet_server, owner)
        message_id = await api.send("once only")
        first = phone(fleet_server, owner, sse=False, pull_interval=1e6, paused=True)
        await first.start()
        await eventually(lambda: _true(message_id in first.messages))
        credentials = first.credentials
        await first.kill()
        second = phone(fleet_server, owner)
        await second.start()
        await api.reaches(message_id, "Delivered")
        # The phone was only cut off; it still has its local queue, its own sending limits
        # still hold the message back, and on reconnecting it pulls.
        back = phone(fleet_server, owner, credentials=credentials, paused=True)
        back.messages = first.messages
        await back.start()
        await eventually(lambda: _true(back.messages[message_id].overall() == "Cancelled"))
        back.paused = False
        await asyncio.sleep(0.5)
        assert back.sent == []
        assert await back_pull_is_empty(back)
        assert (await api.state(message_id))["state"] == "Delivered"
        assert (await api.state(message_id))["deviceId"] == second.credentials.id  # type: ignore[union-attr]
        await second.stop()
        await back.stop()

    run(scenario)


async def back_pull_is_empty(device: SimulatedPhone) -> bool:
    """Once the phone answered about a released message, its pulls no longer list it."""
    await asyncio.sleep(0.3)  # let its Cancelled report land
    response = await device._call("GET", "/message")
    return bool(response.json() == [])


def test_cancel_before_the_pull_cancels_at_once(fleet_server: LiveServer, owner: Account) -> None:
    async def scenario() -> None:
        api = Api(fleet_server, owner)
        message_id = await api.send("never mind")
        cancelled = await api.client.delete(f"/messages/{message_id}")
        assert cancelled.json()["state"] == "Cancelled"
        device = phone(fleet_server, owner)
        await device.start()
        await eventually(lambda: _true(device.pulls > 0))
        await asyncio.sleep(0.3)
        assert device.messages == {}
        await device.stop()

    run(scenario)


def test_cancel_after_the_pull_is_confirmed_by_the_phone(
    fleet_server: LiveServer, owner: Account
) -> None:
    async def scenario() -> None:
        api = Api(fleet_server, owner)
        # It takes messages but holds them, and pulls only when the test says so. A second
        # pull would list the message again, and the phone would re-report it as Pending,
        # which counts as Processed (not cancellable). The worker's round wakes a phone for
        # its pinned messages not yet taken, so a second MessageEnqueued may reach the phone
        # after its first pull (probably what failed twice on slow hosts).
        device = phone(fleet_server, owner, paused=True, pull_interval=1e9, pull_on_enqueued=False)
        await device.start()
        # Wait for the pulls of start-up and of the stream's opening to end.
        await eventually(lambda: _true(device.sse_opens > 0 and device.settled()))
        pinned = device.credentials.id  # type: ignore[union-attr]
        message_id = await api.send("held", deviceId=pinned)
        await device.pull()
        assert message_id in device.messages
        response = await api.client.delete(f"/messages/{message_id}")
        assert response.json().get("state") == "Cancelling", response.text
        await api.reaches(message_id, "Cancelled")
        assert ("MessageCancelled", {"messageId": message_id}) in device.events
        assert device.sent == []
        await device.stop()

    run(scenario)


def test_a_pinned_scheduled_message_stays_on_the_server_until_its_time(
    fleet_server: LiveServer, owner: Account
) -> None:
    async def scenario() -> None:
        api = Api(fleet_server, owner)
        device = phone(fleet_server, owner)
        await device.start()
        await eventually(lambda: _true(device.sse_opens > 0 and device.settled()))
        pinned = device.credentials.id  # type: ignore[union-attr]
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        kept = await api.send("tomorrow", deviceId=pinned, scheduleAt=later)
        soon = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()  # a slow machine too
        due = await api.send("soon", deviceId=pinned, scheduleAt=soon)
        await asyncio.sleep(0.3)
        assert device.messages == {}  # neither is handed over before its time
        # Not yet with any phone: cancelling is immediate and certain.
        response = await api.client.delete(f"/messages/{kept}")
        assert response.json()["state"] == "Cancelled"
        # When its time comes the worker wakes the phone, which takes and sends it.
        await api.reaches(due, "Delivered")
        assert [message for message, _ in device.sent] == [due]
        await device.stop()

    run(scenario)


def test_a_message_nobody_takes_before_valid_until_fails_with_ttl_expired(
    fleet_server: LiveServer, owner: Account
) -> None:
    async def scenario() -> None:
        api = Api(fleet_server, owner)
        message_id = await api.send("too late", ttl=5)
        try:  # the server's clock (in this process) is moved past validUntil, not waited for
            clock.set_clock(lambda: datetime.now(UTC) + timedelta(seconds=6))
            await api.reaches(message_id, "Failed")
        finally:
            clock.set_clock(lambda: datetime.now(UTC))
        state = await api.state(message_id)
        assert state["recipients"][0]["error"] == "TTL expired"

    run(scenario)


def test_a_deleted_phone_gets_401(fleet_server: LiveServer, owner: Account) -> None:
    async def scenario() -> None:
        api = Api(fleet_server, owner)
        device = phone(fleet_server, owner)
        await device.start()
        device_id = device.credentials.id  # type: ignore[union-attr]
        listed = (await api.client.get("/devices")).json()
        assert [d["id"] for d in listed] == [device_id]
        assert (await api.client.delete(f"/devices/{device_id}")).status_code == 204
        with pytest.raises(HTTPStatusError) as error:
            await device.pull()
        assert error.value.response.status_code == 401
        assert (await api.client.get("/devices")).json() == []
        await device.kill()

    run(scenario)
