"""Delivery of webhooks from smsgw's outbox to real receivers on 127.0.0.1: signatures,
exactly one event per recipient and state, retries, restarts, 410, the delivery log."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from smsgw.app import cancel_and_wait
from smsgw.db import migrate
from smsgw.db.engine import database_for
from smsgw.webhooks import guard, outbox
from smsgw.webhooks import repository as webhook_repository
from smsgw.webhooks import service as webhooks_service
from smsgw.workers import webhooks as webhook_worker
from smsgw.workers.webhooks import LEASE_MARGIN_SECONDS, STOPPED, WebhookWorker
from tests.conftest import Account, LiveServer, database_rows, running
from tests.fakes.phone import SimulatedPhone
from tests.fakes.receiver import Receiver
from tests.test_metrics import scrape, value
from tests.webhook_support import (
    Api,
    eventually,
    hub_settings,
    one_event,
    phone,
    run,
    started,
    until,
    verify_signature,
)


@pytest.fixture
def hub_server(tmp_path: Path) -> Iterator[LiveServer]:
    with running(hub_settings(tmp_path / "data")) as live:
        yield live


def test_a_received_sms_reaches_the_webhook_signed(
    hub_server: LiveServer, receiver: Receiver
) -> None:
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        hook = await api.hook(receiver.url, "sms:received")
        device = await started(phone(hub_server, owner), webhooks=5)
        device.receive_sms("+12025550111", "Your code is 1234")
        await eventually(lambda: len(receiver.delivered()) == 1)
        [request] = receiver.requests
        assert verify_signature(await api.key(), request.body, request.headers)
        assert not verify_signature("wrong key", request.body, request.headers)
        envelope = request.json()
        assert set(envelope) == {"deviceId", "event", "id", "webhookId", "payload"}
        assert envelope["deviceId"] == device.credentials.id  # type: ignore[union-attr]
        assert envelope["webhookId"] == hook["id"] and envelope["event"] == "sms:received"
        assert envelope["payload"]["message"] == "Your code is 1234"
        assert envelope["payload"]["sender"] == "+12025550111"
        assert request.headers["Content-Type"] == "application/json"
        [attempt] = await api.finished_deliveries(hook["id"], 1)
        assert attempt["statusCode"] == 200 and attempt["error"] is None
        assert attempt["eventId"] == envelope["id"] and attempt["durationMs"] >= 0
        await device.stop()
        await api.close()

    run(scenario)


def test_each_message_event_reaches_the_webhook_once_per_recipient(
    hub_server: LiveServer, receiver: Receiver
) -> None:
    """The phone posts sms:sent/delivered and reports the same states: one event each."""
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        for event in ("sms:sent", "sms:delivered", "sms:failed"):
            await api.hook(receiver.url, event)
        device = await started(phone(hub_server, owner), webhooks=8)
        numbers = ("+12025550100", "+12025550101")
        ids = [await api.send(f"m{i}", numbers) for i in range(3)]
        await eventually(lambda: len(receiver.delivered()) == 12)
        await asyncio.sleep(1.5)  # late reports and posts must not add anything
        seen = Counter(
            (r.json()["event"], r.json()["payload"]["messageId"], r.json()["payload"]["recipient"])
            for r in receiver.delivered()
        )
        expected = {
            (event, message_id, number)
            for event in ("sms:sent", "sms:delivered") for message_id in ids for number in numbers
        }  # fmt: skip
        assert set(seen) == expected and set(seen.values()) == {1}
        assert len({r.json()["id"] for r in receiver.requests}) == 12
        assert ("sms:sent", 204) in device.webhook_posts  # the phone did post to smsgw
        await device.stop()
        await api.close()

    run(scenario)


def test_state_reports_alone_produce_the_events(hub_server: LiveServer, receiver: Receiver) -> None:
    """A phone that never posts (an old app, or a lost post): the reports are enough."""
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        await api.hook(receiver.url, "sms:failed")
        device = phone(
            hub_server, owner, outcome=lambda _m, _n: ("Failed", "RESULT_ERROR_NO_SERVICE")
        )
        await started(device, webhooks=6)
        device.webhooks = []  # it forgets its webhooks: only state reports reach smsgw
        message_id = await api.send("x")
        await eventually(lambda: len(receiver.delivered()) == 1)
        payload = receiver.requests[0].json()["payload"]
        assert payload["messageId"] == message_id and payload["recipient"] == "+12025550100"
        assert payload["reason"] == "RESULT_ERROR_NO_SERVICE" and "failedAt" in payload
        await device.stop()
        await api.close()

    run(scenario)


def metric(server: LiveServer, name: str, event: str | None, **labels: str) -> float:
    """One sample of smsgw's /metrics page (0 when absent)."""
    return value(scrape(server), name, **labels, **({"event": event} if event else {}))


def test_a_receiver_answering_500_then_200_gets_one_success_per_event(
    hub_server: LiveServer,
) -> None:
    owner = hub_server.create_user("owner")
    receiver = Receiver(statuses=[500, 503, 500]).start()

    counted = ("smsgw_webhook_deliveries_total", "system:ping")
    before = {o: metric(hub_server, *counted, outcome=o) for o in ("delivered", "failed")}

    async def scenario() -> None:
        api = Api(hub_server, owner)
        hook = await api.hook(receiver.url, "system:ping")
        device = await started(phone(hub_server, owner), webhooks=5)
        device.ping()
        await eventually(lambda: len(receiver.delivered()) == 1)
        await asyncio.sleep(1)
        assert [r.status for r in receiver.requests] == [500, 503, 500, 200]
        assert len({r.json()["id"] for r in receiver.requests}) == 1  # one event, retried
        log = await api.finished_deliveries(hook["id"], 4)
        assert [a["statusCode"] for a in log] == [200, 500, 503, 500]  # newest first
        assert [a["error"] for a in log[1:]] == ["HTTP 500", "HTTP 503", "HTTP 500"]
        # The failures are in the owner's event log, and the attempts in the metrics.
        entries = (await api.client.get("/logs")).json()
        failures = [e for e in entries if e["module"] == "webhooks"]
        assert [e["priority"] for e in failures] == ["WARN"] * 3
        assert all(hook["id"] in e["message"] for e in failures)
        for outcome, count in (("delivered", 1), ("failed", 3)):
            now = metric(hub_server, *counted, outcome=outcome)
            assert now - before[outcome] == count
        assert metric(hub_server, "smsgw_webhook_outbox_depth", None) == 0
        await device.stop()
        await api.close()

    try:
        run(scenario)
    finally:
        receiver.stop()


async def hooked_phone(live: LiveServer, owner: Account, url: str) -> tuple[Api, SimulatedPhone]:
    """The owner's API with a webhook `in` of received SMS to `url`, and a started phone."""
    api = Api(live, owner)
    await api.hook(url, "sms:received", id="in")
    return api, await started(phone(live, owner), webhooks=5)


def test_a_receiver_down_across_a_restart_of_smsgw_still_gets_every_event(
    tmp_path: Path,
) -> None:
    receiver = Receiver().start()
    receiver.stop()  # its port is known; nothing listens there yet
    settings = hub_settings(tmp_path / "data", webhooks_retry_max_seconds=0.5)
    with running(settings) as live:
        owner = live.create_user("owner")

        async def before_restart() -> None:
            api, device = await hooked_phone(live, owner, receiver.url)
            for i in range(3):
                device.receive_sms("+12025550111", f"text {i}")
            await eventually(lambda: sum(s == 204 for _, s in device.webhook_posts) == 3)

            async def failed_attempts() -> bool:
                return sum(a["error"] is not None for a in await api.deliveries("in")) >= 3

            await until(failed_attempts)
            await device.stop()
            await api.close()

        run(before_restart)
    receiver.start()
    try:
        with running(settings):

            async def after_restart() -> None:
                await eventually(lambda: len(receiver.delivered()) == 3)
                await asyncio.sleep(1)

            run(after_restart)
        texts = sorted(r.json()["payload"]["message"] for r in receiver.requests)
        assert texts == ["text 0", "text 1", "text 2"]
    finally:
        receiver.stop()


def test_a_request_cut_off_by_a_stop_is_sent_again_at_once_after_the_restart(
    tmp_path: Path,
) -> None:
    """The receiver hangs on the first request and smsgw is stopped meanwhile: the stop
    gives the delivery back, so the restarted smsgw sends it at once (its lease, 2 x 60 s
    + 15 s, would hold it for minutes) and the cut-off attempt says why it ended."""
    receiver = Receiver(delays=[600]).start()
    settings = hub_settings(tmp_path / "data", webhooks_timeout_seconds=60)
    try:
        with running(settings) as live:
            owner = live.create_user("owner")

            async def cut_off() -> None:
                api, device = await hooked_phone(live, owner, receiver.url)
                device.receive_sms("+12025550111", "hello")

                async def in_flight() -> bool:
                    return len(await api.deliveries("in")) == 1

                await until(in_flight)  # recorded before the request, finished by nobody yet
                [attempt] = await api.deliveries("in")
                assert attempt["finishedAt"] is None
                await device.stop()
                await api.close()

            run(cut_off)
        with running(settings) as live:

            async def sent_again() -> None:
                api = Api(live, owner)
                await eventually(lambda: len(receiver.delivered()) == 1, within=45)
                [answered, stopped] = await api.finished_deliveries("in", 2)
                assert answered["statusCode"] == 200 and answered["error"] is None
                assert stopped["finishedAt"] is not None and stopped["statusCode"] is None
                assert stopped["error"] == "smsgw stopped before the answer; sent again"
                assert answered["eventId"] == stopped["eventId"]
                await api.close()

            run(sent_again)
        [request] = receiver.delivered()  # the cut-off request is still hanging there
        assert request.json()["payload"]["message"] == "hello"
    finally:
        receiver.stop()


def test_a_410_disables_the_webhook(hub_server: LiveServer) -> None:
    owner = hub_server.create_user("owner")
    receiver = Receiver(default=410).start()

    async def scenario() -> None:
        api = Api(hub_server, owner)
        await api.hook(receiver.url, "system:ping", id="gone")
        device = await started(phone(hub_server, owner), webhooks=5)
        device.ping()
        await eventually(lambda: len(receiver.requests) == 1)

        async def disabled() -> bool:
            return (await api.client.get("/webhooks")).json()[0]["enabled"] is False

        await until(disabled)
        listed = (await api.client.get("/webhooks")).json()
        assert "410" in listed[0]["disabledReason"]
        device.ping()
        await asyncio.sleep(1)
        assert len(receiver.requests) == 1
        await api.hook(receiver.url, "system:ping", id="gone")  # registering again re-enables
        assert (await api.client.get("/webhooks")).json()[0]["enabled"] is True
        await device.stop()
        await api.close()

    try:
        run(scenario)
    finally:
        receiver.stop()


def test_a_4xx_other_than_410_is_not_retried(hub_server: LiveServer) -> None:
    owner = hub_server.create_user("owner")
    receiver = Receiver(default=404).start()

    async def scenario() -> None:
        api = Api(hub_server, owner)
        await api.hook(receiver.url, "system:ping", id="h")
        device = await started(phone(hub_server, owner), webhooks=5)
        device.ping()
        await eventually(lambda: len(receiver.requests) == 1)
        await asyncio.sleep(1)
        assert len(receiver.requests) == 1
        assert [a["statusCode"] for a in await api.finished_deliveries("h", 1)] == [404]
        await device.stop()
        await api.close()

    try:
        run(scenario)
    finally:
        receiver.stop()


def test_attempts_stop_at_the_limit(tmp_path: Path) -> None:
    receiver = Receiver(default=500).start()
    with running(hub_settings(tmp_path / "data", webhooks_max_attempts=3)) as live:
        owner = live.create_user("owner")

        async def scenario() -> None:
            api = Api(live, owner)
            await api.hook(receiver.url, "system:ping", id="h")
            device = await started(phone(live, owner), webhooks=5)
            device.ping()
            await eventually(lambda: len(receiver.requests) == 3)
            await asyncio.sleep(1.5)
            assert len(receiver.requests) == 3
            await device.stop()
            await api.close()

        try:
            run(scenario)
        finally:
            receiver.stop()


def test_a_webhook_bound_to_a_phone_hears_only_that_phone(
    hub_server: LiveServer, receiver: Receiver
) -> None:
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        one = await started(phone(hub_server, owner), webhooks=5)
        two = await started(phone(hub_server, owner), webhooks=5)
        one_id = one.credentials.id  # type: ignore[union-attr]
        await api.hook(receiver.url, "system:ping", deviceId=one_id)
        await eventually(lambda: all(("WebhooksUpdated", None) in d.events for d in (one, two)))
        for device in (one, two):
            await device.sync_webhooks()
            # Both post their pings to smsgw (their health), once each.
            assert [h["event"] for h in device.webhooks].count("system:ping") == 1
        one.ping()
        two.ping()  # that phone's pings are not for this webhook
        await eventually(lambda: len(receiver.delivered()) == 1)
        await asyncio.sleep(0.5)
        assert [r.json()["deviceId"] for r in receiver.requests] == [one_id]
        for device in (one, two):
            await device.stop()
        await api.close()

    run(scenario)


def test_direct_mode_leaves_delivery_to_the_phone(tmp_path: Path) -> None:
    """Upstream behaviour: the phone posts to the user's URL itself, signed with its own key;
    smsgw delivers nothing, and still fills the inbox."""
    receiver = Receiver().start()
    with running(hub_settings(tmp_path / "data", webhooks_mode="direct")) as live:
        owner = live.create_user("owner")

        async def scenario() -> None:
            api = Api(live, owner)
            await api.hook(receiver.url, "sms:received", id="mine")
            device = await started(phone(live, owner), webhooks=6)
            device.receive_sms("+12025550111", "direct")
            await eventually(lambda: len(receiver.delivered()) == 1)
            await asyncio.sleep(1)
            [request] = receiver.requests
            assert verify_signature(device.signing_key, request.body, request.headers)
            assert await api.deliveries("mine") == []
            assert [i["message"] for i in (await api.inbox())[0]] == ["direct"]
            await device.stop()
            await api.close()

        try:
            run(scenario)
        finally:
            receiver.stop()


def test_a_message_no_phone_took_in_time_fails_with_a_webhook(
    hub_server: LiveServer, receiver: Receiver
) -> None:
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        await api.hook(receiver.url, "sms:failed")
        body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "late"}, "ttl": 5}
        message_id = (await api.client.post("/messages", json=body)).json()["id"]
        await eventually(lambda: len(receiver.delivered()) == 1, within=15)
        envelope = receiver.requests[0].json()
        assert envelope["payload"]["messageId"] == message_id
        assert envelope["payload"]["reason"] == "TTL expired" and envelope["deviceId"] is None
        await api.close()

    run(scenario)


def test_a_message_cancelled_before_any_phone_took_it_sends_sms_cancelled(
    hub_server: LiveServer, receiver: Receiver
) -> None:
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        await api.hook(receiver.url, "sms:cancelled")
        body = {"phoneNumbers": ["+12025550100", "+12025550101"], "textMessage": {"text": "x"}}
        message_id = (await api.client.post("/messages", json=body)).json()["id"]
        cancelled = await api.client.delete(f"/messages/{message_id}")
        assert cancelled.json()["state"] == "Cancelled"
        await eventually(lambda: len(receiver.delivered()) == 2)  # one per recipient
        payloads = [r.json()["payload"] for r in receiver.requests]
        assert {p["messageId"] for p in payloads} == {message_id}
        assert sorted(p["phoneNumber"] for p in payloads) == ["+12025550100", "+12025550101"]
        await api.close()

    run(scenario)


def test_messages_pinned_to_a_deleted_phone_send_sms_failed(
    hub_server: LiveServer, receiver: Receiver
) -> None:
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        device = await started(phone(hub_server, owner, paused=True))
        device_id = device.credentials.id  # type: ignore[union-attr]
        await device.kill()
        await api.hook(receiver.url, "sms:failed")
        body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "x"}}
        message_id = await api.client.post("/messages", json=body | {"deviceId": device_id})
        assert (await api.client.delete(f"/devices/{device_id}")).status_code == 204
        await eventually(lambda: len(receiver.delivered()) == 1)
        payload = receiver.requests[0].json()["payload"]
        assert payload["messageId"] == message_id.json()["id"]
        assert "deleted" in payload["reason"]
        await api.close()

    run(scenario)


def test_a_receiver_trickling_its_answer_is_cut_off_at_the_deadline() -> None:
    """httpx's timeouts bound each read; the deadline bounds the whole exchange, so that a
    delivery never outlives its lease (past it, another server process would send it again)."""
    from datetime import UTC, datetime

    from smsgw.webhooks import sender
    from smsgw.webhooks.repository import Due

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):  # one byte every 0.1 s: each read is quick, the whole is 10 s
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(trickle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        now = datetime.now(UTC)
        item = Due(1, 0, now, now, 1, "hook", f"http://127.0.0.1:{port}/", 1, "ev", "sms:sent",
                   None, {"x": 1})  # fmt: skip
        async with server, guard.session(allow_private=True, timeout=5) as client:
            outcome = await sender.post(client, item, "k" * 32, 1024, deadline=0.5, guarded=False)
            server.close()
        assert outcome.status is None and outcome.error == "no complete answer within 0.5 s"
        assert outcome.duration_ms < 2000

    run(scenario)


def test_a_delivery_taken_by_a_process_killed_before_the_answer_is_due_once_its_lease_ends(
    tmp_path: Path, at: list[datetime]
) -> None:
    """A process killed between taking a delivery and writing its outcome gives nothing
    back: the delivery waits out its lease (2 x the timeout + 15 s), then any process sends
    it again (the same event: an event may reach a receiver twice, never zero times)."""
    settings = hub_settings(tmp_path / "data", webhooks_timeout_seconds=30)
    migrate.upgrade(settings)

    async def scenario() -> None:
        db = database_for(settings)
        try:
            await one_event(db, settings, "http://127.0.0.1:9/hook")
            [(item, _, _)] = await WebhookWorker(settings, db).take()  # then killed
            other = WebhookWorker(settings, db)
            at[0] += timedelta(seconds=2 * 30 + LEASE_MARGIN_SECONDS - 1)
            assert await other.take() == []  # still leased
            at[0] += timedelta(seconds=2)
            [(again, _, _)] = await other.take()
            assert again.pk == item.pk and again.event_id == item.event_id
        finally:
            await db.dispose()

    asyncio.run(scenario())


def winding_down(
    tmp_path: Path, receiver: Receiver, grace: float, concurrency: int = 8, hooks: int = 1
) -> tuple[float, bool, int, list[dict[str, Any]], list[str]]:
    """A worker whose request to `receiver` is out when a stop begins, given `grace`; with
    `hooks` webhooks of the event (each a delivery) and `concurrency` requests at most at a
    time. How long the wind-down took, whether the worker's task had ended by itself, how
    many leases the stop then gave back, every attempt the log holds, and the deliveries'
    states."""
    settings = hub_settings(
        tmp_path / "data", webhooks_timeout_seconds=60, webhooks_concurrency=concurrency
    )
    migrate.upgrade(settings)

    async def scenario() -> tuple[float, bool, int, list[dict[str, Any]], list[str]]:
        db = database_for(settings)
        try:
            user_id = await one_event(db, settings, *[receiver.url] * hooks)
            worker = WebhookWorker(settings, db)
            task = asyncio.create_task(worker.run())
            await eventually(lambda: len(worker._in_flight) == 1)  # a request is out
            began = time.monotonic()
            await worker.wind_down(grace)
            took = time.monotonic() - began
            ended = task.done()
            await cancel_and_wait(task)
            released = await worker.release_leases()
            names = ["in"] + [f"in{n}" for n in range(2, hooks + 1)]
            attempts = [
                a for name in names for a in await webhooks_service.attempts(db, user_id, name)
            ]
            states = [
                row[0] for row in database_rows(settings, "SELECT state FROM webhook_deliveries")
            ]
            return took, ended, released, attempts, sorted(states)
        finally:
            await db.dispose()

    try:
        return asyncio.run(scenario())
    finally:
        receiver.stop()


def test_a_stop_lets_a_request_answered_within_its_grace_finish(tmp_path: Path) -> None:
    """The receiver answers half a second after the stop began: the delivery is settled as
    delivered, nothing is given back, and so nothing is sent again."""
    receiver = Receiver(delays=[0.5]).start()
    _, ended, released, [attempt], states = winding_down(tmp_path, receiver, grace=60)
    assert ended and released == 0
    assert attempt["status_code"] == 200 and attempt["error"] is None
    assert states == ["delivered"]
    assert len(receiver.delivered()) == 1


def test_a_stop_takes_no_delivery_while_it_winds_down(tmp_path: Path) -> None:
    """One request at a time, two deliveries due: the stop begins while the first one's
    request is out; the second is not taken (no attempt, still pending), for another node
    or the next start."""
    receiver = Receiver(delays=[0.5]).start()
    _, ended, released, attempts, states = winding_down(
        tmp_path, receiver, grace=60, concurrency=1, hooks=2
    )
    assert ended and released == 0
    assert [a["status_code"] for a in attempts] == [200]
    assert states == ["delivered", "pending"]
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(("concurrency", "slow_hooks", "events"), [(2, 1, 4), (4, 3, 3)])
def test_slow_receivers_hold_up_only_their_own_requests(
    tmp_path: Path, concurrency: int, slow_hooks: int, events: int
) -> None:
    """`slow_hooks` webhooks whose first requests hang, one more that answers at once, and
    `events` events for all of them: the slots left deliver every other delivery one after
    the other, also when the hanging requests hold half the slots or more (the free ones are
    then taken a poll after the last look). Before, a round waited for its slowest request."""
    slow, fast = Receiver(delays=[600] * slow_hooks).start(), Receiver().start()
    settings = hub_settings(
        tmp_path / "data",
        webhooks_timeout_seconds=300,
        webhooks_concurrency=concurrency,
        webhooks_poll_seconds=0.2,
    )
    migrate.upgrade(settings)
    answered = (slow_hooks + 1) * events - slow_hooks

    async def scenario() -> None:
        db = database_for(settings)
        try:
            user_id = await one_event(db, settings, *[slow.url] * slow_hooks, fast.url)
            for n in range(2, events + 1):
                async with db.write() as conn:
                    await outbox.record(conn, user_id, None, "sms:sent", f"k{n}", {"n": n})
            worker = WebhookWorker(settings, db)
            task = asyncio.create_task(worker.run())
            try:
                # the others answered and their outcomes written; the hanging ones still out
                await eventually(
                    lambda: (
                        len(slow.delivered()) + len(fast.delivered()) == answered
                        and len(worker._in_flight) == slow_hooks
                    )
                )
            finally:
                await cancel_and_wait(task)
            assert await worker.release_leases() == slow_hooks
        finally:
            await db.dispose()

    try:
        asyncio.run(scenario())
    finally:
        slow.stop()
        fast.stop()


def test_a_request_not_answered_within_the_grace_is_cut_off_and_given_back(
    tmp_path: Path,
) -> None:
    receiver = Receiver(delays=[600]).start()  # hangs on the request
    took, ended, released, [attempt], _ = winding_down(tmp_path, receiver, grace=0.5)
    assert took >= 0.49  # it waited for the answer, in vain
    assert not ended and released == 1
    assert attempt["error"] == STOPPED


def test_a_server_stopped_while_a_request_is_out_lets_it_be_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real stop of the server (uvicorn's, then its lifespan's end): the receiver answers
    a moment after the stop began, and that answer settles the delivery; nothing is given
    back. (A grace of 30 s: however slow the machine, the answer comes within it.)"""
    monkeypatch.setattr(webhook_worker, "STOP_GRACE_SECONDS", 30.0)
    receiver = Receiver(delays=[1.0]).start()
    settings = hub_settings(tmp_path / "data", webhooks_timeout_seconds=60)
    try:
        with running(settings) as live:
            owner = live.create_user("owner")

            async def out() -> None:
                api, device = await hooked_phone(live, owner, receiver.url)
                device.receive_sms("+12025550111", "hello")

                async def in_flight() -> bool:
                    return len(await api.deliveries("in")) == 1

                await until(in_flight)  # recorded before the request is sent
                await device.stop()
                await api.close()

            run(out)
        rows = database_rows(settings, "SELECT status_code, error FROM webhook_attempts")
        assert rows == [(200, None)]
        assert len(receiver.delivered()) == 1
    finally:
        receiver.stop()


def test_a_stop_cuts_off_every_request_of_a_round_even_after_one_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing one delivery's outcome fails while another's request hangs: the round waits
    for both, so the stop's cancel reaches the hanging one (no delivery runs on by itself,
    which the stop would give back while its request is still out) and gives it back."""
    fast, hanging = Receiver().start(), Receiver(delays=[600]).start()
    settings = hub_settings(tmp_path / "data", webhooks_timeout_seconds=60)
    migrate.upgrade(settings)
    real_outcome, failed = webhook_repository.outcome_unit, []

    async def failing_once(*args: Any) -> None:
        if not failed:
            failed.append(args[3])
            raise RuntimeError("the outcome could not be written")
        await real_outcome(*args)

    monkeypatch.setattr(webhook_repository, "outcome_unit", failing_once)

    async def scenario() -> None:
        db = database_for(settings)
        try:
            user_id = await one_event(db, settings, hanging.url, fast.url)
            worker = WebhookWorker(settings, db)
            task = asyncio.create_task(worker.run())
            # the fast one's outcome failed, and its failure was handled: with the write's
            # rollback still under way (PostgreSQL awaits it), the stop would cut that off
            # too and rightly give its lease back as well
            await eventually(lambda: bool(failed) and len(worker._in_flight) == 1)
            await cancel_and_wait(task)
            # no request runs on
            names = {task.get_name() for task in asyncio.all_tasks()}
            assert "smsgw-webhook-delivery" not in names
            assert await worker.release_leases() == 1  # the hanging one, not the failed one
            [cut] = await webhooks_service.attempts(db, user_id, "in")
            assert cut["error"] == STOPPED
        finally:
            await db.dispose()

    try:
        asyncio.run(scenario())
    finally:
        fast.stop()
        hanging.stop()


def test_requests_taken_go_out_before_the_prune_and_whatever_it_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The hourly prune comes due with a take: the requests taken go out first (their leases
    run from the take: a prune that took long would eat into them), and a prune that then
    fails strands none of them (before, they were dropped, taken and never sent, until their
    leases ran out, 2 x 60 s + 15 s later)."""
    receiver = Receiver().start()
    settings = hub_settings(tmp_path / "data", webhooks_timeout_seconds=60)
    migrate.upgrade(settings)

    async def scenario() -> None:
        db = database_for(settings)
        try:
            await one_event(db, settings, receiver.url)
            worker = WebhookWorker(settings, db)
            pruned: list[bool] = []

            async def prune() -> int:
                if pruned:  # the hourly prune: once
                    return 0
                # The request is out while the prune runs (bounded: before, it never was).
                with contextlib.suppress(AssertionError):
                    await eventually(lambda: len(receiver.delivered()) == 1, within=20)
                pruned.append(len(receiver.delivered()) == 1)
                raise RuntimeError("the prune failed")

            worker.prune = prune  # type: ignore[method-assign]
            task = asyncio.create_task(worker.run())
            try:
                await eventually(lambda: bool(pruned))
                assert pruned == [True]
                await eventually(lambda: not worker._in_flight)  # its outcome written
            finally:
                await cancel_and_wait(task)
            states = database_rows(settings, "SELECT state FROM webhook_deliveries")
            assert [state for (state,) in states] == ["delivered"]
        finally:
            await db.dispose()

    try:
        asyncio.run(scenario())
    finally:
        receiver.stop()
    assert "the prune failed" in caplog.text
