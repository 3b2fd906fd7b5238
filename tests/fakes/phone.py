"""A simulated Android phone running SMS Gateway for Android (v1.68), as its protocol describes.

It follows section 9 of reference/android-app-protocol.md: registration (anonymous, with
credentials or a one-time code), the start-up `PATCH /device`, a Server-Sent Events stream
with the app's reconnect back-off, pulls on every trigger, a sender that handles one message
at a time, and state reports sent by independent tasks that read the current snapshot when
they run, so they overlap, arrive out of order and repeat. It fakes only the radio: what
happens to each recipient is decided by `outcome`.

It also receives SMS (`receive_sms`, `receive_data_sms`), keeps them in its own inbox, and
emits webhooks as the app does (protocol §4 and §9.10): it syncs the list on
`WebhooksUpdated`, posts signed envelopes to every URL of the event (`sms:received`,
`sms:data-received`, `sms:sent|delivered|failed|cancelled` once per recipient, `system:ping`),
retries with 5 s x 2^(n-1), and replays its inbox on `MessagesExportRequested`.

All of the app's waits are multiplied by `time_scale`, so tests run in seconds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakes.phone_http import Answer, HTTPError, HTTPStatusError, PhoneHTTP, Stream
from tests.fakes.phone_webhooks import PhoneWebhooks, phone_time

APP_VERSION = "1.68.0"
RECONNECT = (5.0,) * 5 + (30.0,) * 5 + (60.0,)
FINAL_STATES = frozenset({"Delivered", "Failed", "Cancelled"})

#: What the radio does for one recipient: ("Delivered"|"Sent"|"Failed", error or None).
Outcome = Callable[[str, str], tuple[str, str | None]]


def delivered(_message_id: str, _number: str) -> tuple[str, str | None]:
    return "Delivered", None


@dataclass
class LocalMessage:
    id: str
    numbers: list[str]
    text: str | None
    priority: int
    created_at: datetime
    with_delivery_report: bool
    valid_until: datetime | None
    schedule_at: datetime | None
    sim_number: int | None
    recipients: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str | None] = field(default_factory=dict)
    states: dict[str, datetime] = field(default_factory=dict)

    def overall(self) -> str:
        """The message state the app works out from its recipients (protocol 3.4)."""
        values = list(self.recipients.values())
        for state in ("Pending", "Cancelling", "Cancelled", "Processed"):
            if state in values:
                return state
        for state in ("Failed", "Delivered"):
            if all(v == state for v in values):
                return state
        return "Sent"

    def set(self, number: str, state: str, error: str | None = None) -> bool:
        if self.recipients.get(number) == "Failed":
            return False  # a failed recipient never changes
        self.recipients[number] = state
        self.errors[number] = error
        self.states.setdefault(self.overall(), datetime.now(UTC))
        return True


def _release(version: str) -> tuple[int, int]:
    """(major, minor) of an app version; the source tree's placeholder 1.0.0 is the newest."""
    if version == "1.0.0":
        return (999, 0)
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Credentials:
    id: str
    token: str
    login: str
    password: str | None


class SimulatedPhone(PhoneWebhooks):
    """One phone. `await start()`, then it works on its own until `stop()` or `kill()`."""

    def __init__(
        self,
        base_url: str,
        *,
        login: tuple[str, str] | None = None,
        code: str | None = None,
        private_token: str | None = None,
        name: str = "Google/oriole",
        sim_numbers: tuple[int, ...] = (1,),
        order: str = "lifo",
        outcome: Outcome = delivered,
        send_delay: float = 0.0,
        report_jitter: float = 0.05,
        time_scale: float = 0.02,
        pull_interval: float = 900.0,
        credentials: Credentials | None = None,
        sse: bool | None = None,
        paused: bool = False,
        pull_on_enqueued: bool = True,
        skip_processed_on_export: bool = True,
        webhook_retries: int = 15,
        app_version: str = APP_VERSION,
        webhook_gate: asyncio.Event | None = None,
    ) -> None:
        self.base_url = base_url
        self.login = login
        self.code = code
        self.private_token = private_token
        self.name = name
        self.sim_numbers = sim_numbers
        self.order = order
        self.outcome = outcome
        self.send_delay = send_delay
        self.report_jitter = report_jitter
        self.scale = time_scale
        self.pull_interval = pull_interval
        self.credentials = credentials
        # False: a phone that only polls (push mode, or an app before 1.43 without a stream)
        self.sse = sse if sse is not None else _release(app_version) >= (1, 43)
        self.paused = paused  # True: the sender waits (the phone's own limits hold it back)
        # False: MessageEnqueued does not make it pull (a test calls pull() itself)
        self.pull_on_enqueued = pull_on_enqueued
        self.app_version = app_version  # named in every request's User-Agent, as the app does
        self.webhook_gate = webhook_gate  # posts wait until it is set (as without a network)
        self.init_webhooks(skip_processed_on_export, webhook_retries)
        self.messages: dict[str, LocalMessage] = {}
        self.sent: list[tuple[str, str]] = []  # (message id, number) handed to the radio
        self.events: list[tuple[str, Any]] = []
        self.webhooks: list[Any] = []
        self.settings: dict[str, Any] = {}
        self.sse_opens = 0
        self.pulls = 0
        self.pulls_done = 0
        self.report_failures = 0
        #: When (time.monotonic()) the server first took a report of each message in a final
        #: state: benchmarks measure Delivered here rather than by polling the server.
        self.final_reported: dict[str, float] = {}
        self.reports_sent = 0  # PATCH /message requests the server took
        self._wake = asyncio.Event()
        self._pull_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._http = PhoneHTTP(user_agent=f"me.capcom.smsgateway/{app_version}")

    # -- HTTP -----------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        assert self.credentials is not None
        return {"Authorization": f"Bearer {self.credentials.token}"}

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Answer:
        """Any non-2xx answer raises HTTPStatusError, as with Ktor's expectSuccess."""
        sent = {"Accept": "application/json", **(self._auth() if headers is None else headers)}
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            sent["Content-Type"] = "application/json; charset=UTF-8"
        return await self._http.request(
            method, self.base_url + path, headers=sent, body=content, params=params
        )

    # -- registration (steps 2 and 3) -----------------------------------------------------

    async def register(self) -> Credentials:
        body: dict[str, Any] = {
            "name": self.name,
            "simCards": [
                {"slotIndex": n - 1, "simNumber": n, "carrierName": "****bile"}
                for n in self.sim_numbers
            ],
        }
        if self.login is not None:
            token = base64.b64encode(f"{self.login[0]}:{self.login[1]}".encode()).decode()
            headers = {"Authorization": f"Basic {token}"}
        elif self.code is not None:
            headers = {"Authorization": f"Code {self.code}"}
        elif self.private_token is not None:
            headers = {"Authorization": f"Bearer {self.private_token}"}
        else:
            headers = {}
        data = (await self._call("POST", "/device", body, headers=headers)).json()
        self.credentials = Credentials(
            data["id"], data["token"], data["login"], data.get("password")
        )
        return self.credentials

    async def start(self) -> None:
        """Register if needed, send the start-up update, then run the app's loops."""
        if self.credentials is None:
            await self.register()
        assert self.credentials is not None
        body = {
            "id": self.credentials.id,
            "simCards": [{"slotIndex": n - 1, "simNumber": n} for n in self.sim_numbers],
        }
        try:
            await self._call("PATCH", "/device", body)
        except HTTPStatusError as error:
            if error.response.status_code != 401:
                raise
            self.login = self.code = None  # a 401 here means: register again, anonymously
            await self.register()
        loops = [self._pull_loop(), self._sender_loop()]
        if self.sse:
            loops.append(self._sse_loop())
        for loop in loops:
            self._tasks.append(asyncio.create_task(loop))
        self._pull_now.set()

    async def stop(self) -> None:
        """Stop the app and let the last reports go out."""
        await asyncio.sleep(0.3)
        await self.kill()

    async def kill(self) -> None:
        """The phone dies: every loop and every pending report stops at once."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            # Python 3.11's wait_for can swallow a cancel that lands as its wait ends (a loop
            # then runs on): cancel again until the task is really done.
            while not task.done():
                await asyncio.wait([task], timeout=1)
                task.cancel()
            if not task.cancelled():
                task.exception()  # retrieved: a loop that failed is not reported later
        self._tasks.clear()
        await self._http.close()

    # -- events (step 4 and 12) -----------------------------------------------------------

    async def _sse_loop(self) -> None:
        attempt = 0
        while True:
            try:
                async with self._http.stream(
                    "GET", self.base_url + "/events",
                    headers={**self._auth(), "Accept": "text/event-stream",
                             "User-Agent": "okhttp/4.10.0"},  # plain OkHttp, as in the app
                ) as response:  # fmt: skip
                    response.raise_for_status()
                    assert response.headers["content-type"].startswith("text/event-stream")
                    attempt = 0
                    self.sse_opens += 1
                    self._pull_now.set()  # on open the app pulls at once
                    await self._read_frames(response)
            except (HTTPError, AssertionError):
                pass
            attempt += 1
            await asyncio.sleep(RECONNECT[min(attempt, len(RECONNECT)) - 1] * self.scale)

    async def _read_frames(self, response: Stream) -> None:
        event, data = None, None
        async for line in response.lines():
            if line.startswith(":"):
                continue
            if line == "":
                if data is not None:  # a frame without data is never delivered
                    await self._on_event(event or "MessageEnqueued", data)
                event, data = None, None
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()

    async def _on_event(self, event: str, data: str) -> None:
        payload = json.loads(data)
        self.events.append((event, payload))
        if event == "MessageEnqueued":
            if self.pull_on_enqueued:
                self._pull_now.set()
        elif event == "MessageCancelled":
            message = self.messages.get(payload["messageId"])
            if message is not None and message.overall() == "Pending":
                self._cancel(message)
        elif event == "WebhooksUpdated":
            await self.sync_webhooks()
        elif event == "MessagesExportRequested":
            self._export(payload)
        elif event == "SettingsUpdated":
            self.settings = (await self._call("GET", "/settings")).json()

    # -- pulls (steps 5 and 6) ------------------------------------------------------------

    async def _pull_loop(self) -> None:
        backoff = 10.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pull_now.wait(), self.pull_interval * self.scale)
            self._pull_now.clear()
            try:
                await self.pull()
                backoff = 10.0
            except HTTPError:
                await asyncio.sleep(backoff * self.scale)
                backoff *= 2
                self._pull_now.set()

    async def pull(self) -> None:
        self.pulls += 1
        try:
            items = (await self._call("GET", "/message", params={"order": self.order})).json()
        finally:
            self.pulls_done += 1
        for item in items:
            self._take(item)
        self._wake.set()

    def settled(self) -> bool:
        """No pull is running or about to run (tests wait for this to avoid racing a pull)."""
        return self.pulls_done == self.pulls and not self._pull_now.is_set()

    def _take(self, item: dict[str, Any]) -> None:
        state = item.get("state")
        known = self.messages.get(item["id"])
        if state == "Cancelling":
            if known is None:
                self._report_unknown_cancelled(item)
            elif known.overall() == "Pending":
                self._cancel(known)
            return
        if state not in (None, "Pending"):
            return
        if known is not None:
            self._report(known)  # seen again: re-report the current snapshot
            return
        text = (item.get("textMessage") or {}).get("text") or item.get("message")
        if (text is None and item.get("dataMessage") is None) or item.get("phoneNumbers") is None:
            return  # invalid content: logged and skipped by the app
        message = LocalMessage(
            id=item["id"],
            numbers=list(item["phoneNumbers"]),
            text=text,
            priority=item.get("priority", 0),
            created_at=_parse(item.get("createdAt")) or datetime.now(UTC),
            with_delivery_report=item.get("withDeliveryReport", True),
            valid_until=_parse(item.get("validUntil")),
            schedule_at=_parse(item.get("scheduleAt")),
            sim_number=item.get("simNumber"),
        )
        message.recipients = dict.fromkeys(message.numbers, "Pending")
        message.states = {"Pending": datetime.now(UTC)}
        self.messages[message.id] = message  # no report at enqueue time

    # -- sending (step 7) -----------------------------------------------------------------

    def _next(self) -> LocalMessage | None:
        now = datetime.now(UTC)
        ready = [
            m for m in self.messages.values()
            if m.overall() == "Pending" and (m.schedule_at is None or m.schedule_at <= now)
        ]  # fmt: skip
        newest = self.order == "lifo"
        ready.sort(
            key=lambda m: (
                -m.priority,
                -m.created_at.timestamp() if newest else m.created_at.timestamp(),
            )
        )
        return ready[0] if ready else None

    async def _sender_loop(self) -> None:
        while True:
            message = None if self.paused else self._next()
            if message is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.2)
                continue
            await self._send(message)

    async def _send(self, message: LocalMessage) -> None:
        if message.valid_until is not None and message.valid_until < datetime.now(UTC):
            for number in message.numbers:
                message.set(number, "Failed", "TTL expired")
            self._report(message)
            return
        if message.sim_number is not None and message.sim_number not in self.sim_numbers:
            for number in message.numbers:
                message.set(
                    number, "Failed", f"Can't send message: SIM {message.sim_number} not found"
                )
            self._report(message)
            return
        for number in message.numbers:
            self.sent.append((message.id, number))
            message.set(number, "Processed")
            self._report(message)
        await asyncio.sleep(self.send_delay)
        for number in message.numbers:
            result, error = self.outcome(message.id, number)
            if result == "Failed":
                message.set(number, "Failed", error)
                self._emit_state(message, number)
                self._report(message)
                continue
            message.set(number, "Sent")
            self._emit_state(message, number)
            self._report(message)
            if message.with_delivery_report and result == "Delivered":
                message.set(number, "Delivered")
                self._emit_state(message, number)
                self._report(message)

    def _cancel(self, message: LocalMessage) -> None:
        for number in message.numbers:
            if message.set(number, "Cancelled"):
                self._emit_state(message, number)
        self._report(message)

    # -- reports (step 8) -----------------------------------------------------------------

    def _snapshot(self, message: LocalMessage) -> list[dict[str, Any]]:
        recipients = []
        for number in message.numbers:
            entry: dict[str, Any] = {"phoneNumber": number, "state": message.recipients[number]}
            if message.errors.get(number):
                entry["error"] = message.errors[number]
            recipients.append(entry)
        states = {state: phone_time(at) for state, at in message.states.items()}
        return [
            {
                "id": message.id,
                "state": message.overall(),
                "recipients": recipients,
                "states": states,
            }
        ]

    def _report(self, message: LocalMessage) -> None:
        self._tasks.append(asyncio.create_task(self._send_report(lambda: self._snapshot(message))))

    def _report_unknown_cancelled(self, item: dict[str, Any]) -> None:
        now = phone_time(datetime.now(UTC))
        numbers = item.get("phoneNumbers", [])
        body = [{
            "id": item["id"], "state": "Cancelled",
            "recipients": [{"phoneNumber": n, "state": "Cancelled"} for n in numbers],
            "states": {"Cancelled": now},
        }]  # fmt: skip
        self._tasks.append(asyncio.create_task(self._send_report(lambda: body)))

    async def _send_report(self, snapshot: Callable[[], list[dict[str, Any]]]) -> None:
        await asyncio.sleep(random.uniform(0, self.report_jitter))
        for attempt in range(11):
            try:
                body = snapshot()
                await self._call("PATCH", "/message", body)
                self.reports_sent += 1
                if body[0]["state"] in FINAL_STATES:
                    self.final_reported.setdefault(body[0]["id"], time.monotonic())
                return
            except HTTPError:
                self.report_failures += 1
                await asyncio.sleep(10 * 2**attempt * self.scale)
