"""Inbox exports (`POST /inbox/refresh`): recorded per phone, sent to an offline phone when
it connects (across a restart too), closed once the replay is quiet, and then delivering
what `webhookDelivery` asked for, once: batches of at most 100 messages in time order
covering known and new messages, individual re-sends of known ones, or nothing extra."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from smsgw.config import Settings
from tests.conftest import database_rows, running
from tests.fakes.phone import SimulatedPhone
from tests.fakes.phone_webhooks import InboxSms
from tests.fakes.receiver import Receiver
from tests.webhook_support import (
    Api,
    drained,
    eventually,
    hub_settings,
    phone,
    run,
    started,
    until,
)

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WIDE = {"since": "2026-01-01T00:00:00Z", "until": "2026-12-31T00:00:00Z"}


def export_settings(data_dir: Path, settle: float = 3, **overrides: object) -> Settings:
    """An export closes once its phone has been quiet for `settle` seconds: a busy machine
    can hold a phone's next post for half a second (with 0.5 s here, an export for an
    offline phone once closed between the two posts of its replay, and its batch missed the
    second), so the window is generous, and the tests wait for the close, not for the time."""
    return hub_settings(data_dir, inbox_export_settle_seconds=settle, **overrides)


def export_states(settings: Settings) -> list[str]:
    """The state of every recorded export, oldest first (read from the database)."""
    return [
        state for (state,) in database_rows(settings, "SELECT state FROM inbox_exports ORDER BY id")
    ]


def missed(device: SimulatedPhone, count: int, start: datetime) -> list[InboxSms]:
    """Messages in the phone's inbox that never reached smsgw (it was down, say)."""
    found = [
        InboxSms(f"{i:032x}", "+12025550119", f"missed {i}", None, start + timedelta(minutes=i))
        for i in range(count)
    ]
    device.inbox.extend(found)
    return found


def batches(receiver: Receiver, event: str = "sms:batch:received") -> list[list[dict[str, Any]]]:
    """The messages of each batch delivered, in the order of their first message."""
    found = [r.json()["payload"]["messages"] for r in receiver.delivered(event)]
    return sorted(found, key=lambda messages: phone_moment(messages[0]))


def phone_moment(payload: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(payload["receivedAt"])


async def refresh(api: Api, **body: Any) -> None:
    answer = await api.client.post("/inbox/refresh", json=WIDE | body)
    assert answer.status_code == 202, answer.text


async def posted_settled(device: SimulatedPhone, count: int) -> None:
    """Wait until the phone made `count` successful posts."""
    await eventually(lambda: sum(status == 204 for _, status in device.webhook_posts) == count)


def test_a_batch_refresh_delivers_every_message_in_range_in_batches_of_100(
    tmp_path: Path,
) -> None:
    settings = export_settings(tmp_path / "data")
    receiver = Receiver().start()
    with running(settings) as live:
        owner = live.create_user("owner")

        async def scenario() -> None:
            api = Api(live, owner)
            for event in ("sms:received", "sms:batch:received", "mms:batch:downloaded"):
                await api.hook(receiver.url, event)
            device = await started(phone(live, owner), webhooks=5)
            for i in range(105):
                device.receive_sms("+12025550111", f"live {i}", BASE + timedelta(minutes=10 + i))
            device.receive_mms("+12025550112", "Pic", "look", [("image/png", "a.png", b"\x01")],
                               BASE + timedelta(hours=5))  # fmt: skip
            device.receive_sms("+12025550113", "out of range", datetime(2025, 1, 1, tzinfo=UTC))
            earlier = missed(device, 5, BASE)  # older than every live one, stored last
            await eventually(lambda: len(receiver.delivered("sms:received")) == 106)
            await refresh(api, webhookDelivery="Batch", messageTypes=["SMS", "MMS"])
            await eventually(lambda: len(receiver.delivered("sms:batch:received")) == 2)
            await eventually(lambda: len(receiver.delivered("mms:batch:downloaded")) == 1)
            await until(drained(settings))  # closed, and everything sent: nothing more comes
            assert export_states(settings) == ["done"]
            first, second = batches(receiver)
            assert (len(first), len(second)) == (100, 10)
            messages = first + second
            moments = [phone_moment(m) for m in messages]
            assert moments == sorted(moments)
            assert [m["message"] for m in messages[:5]] == [sms.text for sms in earlier]
            assert {m["message"] for m in messages[5:]} == {f"live {i}" for i in range(105)}
            assert messages[0]["receivedAt"].endswith("+03:00")  # as the phone posted it
            [[mms]] = batches(receiver, "mms:batch:downloaded")
            # Attachment metadata in the batch, the bytes fetched by id (they would make a
            # batch of 100 MMS as big as 100 posts).
            [attachment] = mms["attachments"]
            assert mms["body"] == "look" and "data" not in attachment
            assert (attachment["contentType"], attachment["name"]) == ("image/png", "a.png")
            [stored], _ = await api.inbox(type="MMS_DOWNLOADED")
            part = await api.client.get(f"/inbox/{stored['id']}/attachments/{attachment['partId']}")
            assert part.content == b"\x01"
            # The missed ones also went out singly when first stored, once; nothing else did.
            singles = Counter(
                r.json()["payload"]["message"] for r in receiver.delivered("sms:received")
            )
            assert len(singles) == 111 and set(singles.values()) == {1}
            assert len(receiver.requests) == 111 + 3
            await device.stop()
            await api.close()

        try:
            run(scenario)
        finally:
            receiver.stop()


def test_a_batch_export_is_delivered_once_across_restarts(tmp_path: Path) -> None:
    """smsgw stops after the phone replayed but before the export settled: the export is
    closed after the restart, its batch sent once, and a further restart sends nothing."""
    settings = export_settings(tmp_path / "data")
    receiver = Receiver().start()
    try:
        with running(settings) as live:
            owner = live.create_user("owner")

            async def before() -> None:
                api = Api(live, owner)
                await api.hook(receiver.url, "sms:batch:received")
                device = await started(phone(live, owner), webhooks=5)
                for i in range(3):
                    device.receive_sms("+12025550111", f"live {i}", BASE + timedelta(hours=i))
                missed(device, 2, BASE - timedelta(days=1))
                await posted_settled(device, 3)
                await refresh(api, webhookDelivery="Batch")
                await posted_settled(device, 5)
                await device.stop()
                await api.close()

            run(before)
        assert receiver.delivered() == [] and export_states(settings) == ["open"]
        with running(settings):
            run(lambda: eventually(lambda: len(receiver.delivered()) == 1))
            # Its outcome written before the stop (one cut off would be sent again: at least
            # once, docs/webhooks.md).
            run(lambda: until(drained(settings)))
        with running(settings):
            run(lambda: asyncio.sleep(1.5))
        [messages] = batches(receiver)
        assert sorted(m["message"] for m in messages) == [
            "live 0", "live 1", "live 2", "missed 0", "missed 1"
        ]  # fmt: skip
        assert len(receiver.requests) == 1 and export_states(settings) == ["done"]
    finally:
        receiver.stop()


@pytest.mark.parametrize(
    ("body", "resent"),
    [
        ({"webhookDelivery": "Individual"}, True),
        ({"triggerWebhooks": True}, True),
        ({}, False),
        ({"triggerWebhooks": True, "webhookDelivery": "Disabled"}, False),
    ],
)
def test_individual_delivery_resends_known_messages_and_disabled_nothing_extra(
    tmp_path: Path, body: dict[str, Any], resent: bool
) -> None:
    settings = export_settings(tmp_path / "data")
    receiver = Receiver().start()
    with running(settings) as live:
        owner = live.create_user("owner")

        async def scenario() -> None:
            api = Api(live, owner)
            for event in ("sms:received", "sms:batch:received"):
                await api.hook(receiver.url, event)
            device = await started(phone(live, owner), webhooks=5)
            for i in range(2):
                device.receive_sms("+12025550111", f"known {i}", BASE + timedelta(hours=i))
            device.receive_sms("+12025550111", "outside", datetime(2025, 6, 1, tzinfo=UTC))
            missed(device, 1, BASE)
            await eventually(lambda: len(receiver.delivered()) == 3)
            await refresh(api, **body)
            await posted_settled(device, 4)

            async def closed() -> bool:
                return export_states(settings) == ["done"]

            await until(closed)
            await until(drained(settings))
            texts = Counter(r.json()["payload"]["message"] for r in receiver.delivered())
            times = 2 if resent else 1
            assert texts == {"known 0": times, "known 1": times, "outside": 1, "missed 0": 1}
            assert len(receiver.requests) == sum(texts.values())  # no batch, nothing retried
            ids = [r.json()["id"] for r in receiver.requests]
            assert len(set(ids)) == len(ids)
            await device.stop()
            await api.close()

        try:
            run(scenario)
        finally:
            receiver.stop()


def test_a_refresh_for_an_offline_phone_reaches_it_when_it_connects(tmp_path: Path) -> None:
    """Asked while the phone was off, kept across a restart of smsgw, sent when it connects."""
    settings = export_settings(tmp_path / "data")
    receiver = Receiver().start()
    try:
        with running(settings) as live:
            owner = live.create_user("owner")

            async def before() -> SimulatedPhone:
                api = Api(live, owner)
                await api.hook(receiver.url, "sms:batch:received")
                device = await started(phone(live, owner), webhooks=5)
                device.receive_sms("+12025550111", "known", BASE)
                await posted_settled(device, 1)
                await device.stop()  # the phone goes away
                missed(device, 1, BASE)
                await refresh(api, webhookDelivery="Batch")
                await api.close()
                return device

            gone = asyncio.run(before())
        # Never sent to a phone, so it could not settle (only requested exports do).
        exports = database_rows(settings, "SELECT state, requested_at FROM inbox_exports")
        assert exports == [("open", None)]
        assert receiver.delivered() == []
        with running(settings) as live:

            async def after() -> None:
                back = phone(live, owner, credentials=gone.credentials)
                back.inbox, back.processed = gone.inbox, gone.processed
                await started(back, webhooks=5)
                await eventually(lambda: len(receiver.delivered()) == 1)
                [(_event, data)] = [e for e in back.events if e[0] == "MessagesExportRequested"]
                assert data["since"] == "2026-01-01T00:00:00.000Z"
                [messages] = batches(receiver)
                assert sorted(m["message"] for m in messages) == ["known", "missed 0"]
                await back.stop()

            run(after)
    finally:
        receiver.stop()


def test_an_export_without_any_post_closes_and_sends_no_empty_batch(tmp_path: Path) -> None:
    settings = export_settings(tmp_path / "data")
    receiver = Receiver().start()
    with running(settings) as live:
        owner = live.create_user("owner")

        async def scenario() -> None:
            api = Api(live, owner)
            await api.hook(receiver.url, "sms:batch:received")
            device = await started(phone(live, owner), webhooks=5)
            device.receive_sms("+12025550111", "long ago", datetime(2020, 1, 1, tzinfo=UTC))
            await posted_settled(device, 1)
            await refresh(api, webhookDelivery="Batch")
            await eventually(lambda: any(e == "MessagesExportRequested" for e, _ in device.events))

            async def closed() -> bool:
                return export_states(settings) == ["done"]

            await until(closed)
            await until(drained(settings))
            assert receiver.requests == []
            await device.stop()
            await api.close()

        try:
            run(scenario)
        finally:
            receiver.stop()


def test_in_direct_mode_exports_reach_phones_but_smsgw_sends_no_export_events(
    tmp_path: Path,
) -> None:
    settings = export_settings(tmp_path / "data", webhooks_mode="direct")
    receiver = Receiver().start()
    with running(settings) as live:
        owner = live.create_user("owner")

        async def scenario() -> None:
            api = Api(live, owner)
            await api.hook(receiver.url, "sms:batch:received")
            device = await started(phone(live, owner), webhooks=5)
            device.receive_sms("+12025550111", "known", BASE)
            missed(device, 1, BASE)
            await posted_settled(device, 1)
            await refresh(api, webhookDelivery="Batch")
            await posted_settled(device, 2)  # the replay still fills the inbox

            async def closed() -> bool:
                return export_states(settings) == ["done"]

            await until(closed)
            await until(drained(settings))
            assert receiver.requests == [] and (await api.inbox())[1] == 2
            await device.stop()
            await api.close()

        try:
            run(scenario)
        finally:
            receiver.stop()
