"""Message events in hub mode carry every field of the phone's own post (`sender`,
`simNumber`, `partsCount`), whether smsgw hears of the change first from the phone's state
report or from its post."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, running
from tests.fakes.phone_webhooks import own_number
from tests.fakes.receiver import Receiver
from tests.webhook_support import Api, eventually, hub_settings, phone, run, started, until

NUMBER = "+12025550100"


@pytest.fixture
def waiting_server(tmp_path: Path) -> Iterator[LiveServer]:
    """Events from state reports wait up to 120 s for the phone's post (far beyond what the
    tests wait for a delivery: one within that time was not held back for the wait)."""
    settings = hub_settings(tmp_path / "data", webhooks_phone_post_wait_seconds=120)
    with running(settings) as live:
        yield live


def test_an_event_first_known_from_the_state_report_waits_for_the_post_and_has_its_fields(
    waiting_server: LiveServer, receiver: Receiver
) -> None:
    owner = waiting_server.create_user("owner")

    async def scenario() -> None:
        api = Api(waiting_server, owner)
        for event in ("sms:sent", "sms:delivered"):
            await api.hook(receiver.url, event)
        gate = asyncio.Event()  # the phone's posts wait, as without a network
        device = await started(phone(waiting_server, owner, webhook_gate=gate), webhooks=7)
        message_id = await api.send("hello")

        async def delivered() -> bool:
            answer = await api.client.get(f"/messages/{message_id}")
            return bool(answer.json()["state"] == "Delivered")

        await until(delivered)  # the state reports are in: smsgw knows both events
        await asyncio.sleep(0.5)  # a delivery made now would have reached the receiver
        assert receiver.requests == []
        gate.set()
        await eventually(lambda: len(receiver.delivered()) == 2, within=60)  # not held the 120 s
        for request in receiver.delivered():
            payload = request.json()["payload"]
            assert payload["messageId"] == message_id and payload["recipient"] == NUMBER
            assert payload["phoneNumber"] == NUMBER
            assert payload["sender"] == own_number(1) and payload["simNumber"] == 1
        sent = [
            r.json()["payload"] for r in receiver.delivered() if r.json()["event"] == "sms:sent"
        ]
        assert sent[0]["partsCount"] == 1 and sent[0]["sentAt"].endswith("+03:00")
        await device.stop()
        await api.close()

    run(scenario)


def test_an_event_the_post_told_first_has_the_fields_too(
    waiting_server: LiveServer, receiver: Receiver
) -> None:
    owner = waiting_server.create_user("owner")

    async def scenario() -> None:
        api = Api(waiting_server, owner)
        await api.hook(receiver.url, "sms:failed")
        device = phone(
            waiting_server, owner, outcome=lambda _m, _n: ("Failed", "RESULT_ERROR_NO_SERVICE")
        )
        await started(device, webhooks=6)
        await api.send("x")
        await eventually(lambda: len(receiver.delivered()) == 1, within=20)
        payload = receiver.delivered()[0].json()["payload"]
        assert payload["sender"] == own_number(1) and payload["simNumber"] == 1
        assert payload["reason"] == "RESULT_ERROR_NO_SERVICE"
        await device.stop()
        await api.close()

    run(scenario)


def test_an_event_of_an_app_that_cannot_post_it_does_not_wait(
    waiting_server: LiveServer, receiver: Receiver
) -> None:
    """App 1.66 knows no `sms:cancelled`: it is never told to post it, so the event from its
    report of the cancellation is not held back."""
    owner = waiting_server.create_user("owner")

    async def scenario() -> None:
        api = Api(waiting_server, owner)
        await api.hook(receiver.url, "sms:cancelled")
        # Pulls only when told, so that no second pull re-reports the message (a report
        # would make it Processed, and too late to cancel).
        device = phone(
            waiting_server, owner, app_version="1.66.2", paused=True, sse=False, pull_interval=1e6
        )
        await device.start()
        await eventually(device.settled)
        await device.sync_webhooks()
        assert {hook["event"] for hook in device.webhooks} == {
            "sms:received", "sms:data-received", "mms:received", "mms:downloaded", "system:ping"
        }  # fmt: skip
        message_id = await api.send("hello")
        await device.pull()  # the phone holds it, Pending
        answer = await api.client.delete(f"/messages/{message_id}")
        assert answer.status_code == 200 and answer.json()["state"] == "Cancelling", answer.text
        await device.pull()  # sees it Cancelling: cancels it and reports Cancelled
        await eventually(lambda: len(receiver.delivered()) == 1, within=60)  # not held the 120 s
        payload = receiver.delivered()[0].json()["payload"]
        assert payload["messageId"] == message_id and "cancelledAt" in payload
        await device.stop()
        await api.close()

    run(scenario)
