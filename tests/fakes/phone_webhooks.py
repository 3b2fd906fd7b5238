"""The simulated phone's webhooks and inbox (protocol §4, §9.10, §9.12), as a mixin of
`SimulatedPhone`: it syncs its webhook list, posts signed envelopes to every URL of an event
with the app's retries, receives SMS into its own inbox and replays it on request."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tests.fakes.phone_http import Answer, HTTPError, PhoneHTTP

if TYPE_CHECKING:
    from tests.fakes.phone import Credentials, LocalMessage

#: Webhook events of the app and the first release knowing each (its `WebHookEvent` enum,
#: tag by tag); any other value makes the webhook sync of a release fail.
EVENT_SINCE = {
    "sms:received": (1, 15), "system:ping": (1, 16), "sms:sent": (1, 18),
    "sms:delivered": (1, 19), "sms:failed": (1, 19), "sms:data-received": (1, 39),
    "mms:received": (1, 47), "mms:downloaded": (1, 56), "app:started": (1, 66),
    "sms:cancelled": (1, 67),
}  # fmt: skip


def app_events(version: str) -> set[str]:
    """The webhook events the app release `version` (e.g. "1.55.1") can parse; "1.0.0" is
    the source tree's placeholder, reported only by self-built apps of the current code."""
    if version == "1.0.0":
        return set(EVENT_SINCE)
    release = tuple(int(part) for part in version.split(".")[:2])
    return {event for event, since in EVENT_SINCE.items() if release >= since}


STATE_EVENTS = {
    "Sent": ("sms:sent", "sentAt"),
    "Delivered": ("sms:delivered", "deliveredAt"),
    "Failed": ("sms:failed", "failedAt"),
    "Cancelled": ("sms:cancelled", "cancelledAt"),
}


def own_number(sim: int) -> str:
    """The phone number of the simulated SIM in slot `sim` (the app's `sender` of sent SMS)."""
    return f"+1555000000{sim}"


def phone_time(moment: datetime) -> str:
    """The app's `yyyy-MM-dd'T'HH:mm:ss.SSSXXX`, in a +03:00 zone to exercise offsets."""
    local = moment.astimezone(UTC) + timedelta(hours=3)
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}+03:00"


@dataclass
class InboxSms:
    """A message in the phone's own SMS inbox."""

    message_id: str
    sender: str
    text: str | None
    data: str | None
    received_at: datetime


@dataclass
class InboxMms:
    """A downloaded MMS in the phone's own MMS inbox; `parts` are (content type, name,
    bytes or None: the app sends no bytes for a part it could not read)."""

    message_id: str
    sender: str
    subject: str | None
    body: str | None
    parts: list[tuple[str, str | None, bytes | None]]
    received_at: datetime

    def received_payload(self) -> dict[str, Any]:
        size = sum(len(data or b"") for _, _, data in self.parts)
        return {**self._common(), "transactionId": "T" + self.message_id[:20],
                "subject": self.subject, "contentClass": "IMAGE_BASIC", "size": size}  # fmt: skip

    def downloaded_payload(self) -> dict[str, Any]:
        attachments = [
            {"partId": 100 + i, "contentType": kind, "name": name,
             "size": len(data) if data is not None else 0,
             "data": base64.b64encode(data).decode() if data is not None else None}
            for i, (kind, name, data) in enumerate(self.parts)
        ]  # fmt: skip
        attachments = [{k: v for k, v in a.items() if v is not None} for a in attachments]
        return {**self._common(), "subject": self.subject, "body": self.body,
                "attachments": attachments}  # fmt: skip

    def _common(self) -> dict[str, Any]:
        return {"messageId": self.message_id, "sender": self.sender, "phoneNumber": self.sender,
                "simNumber": 1, "receivedAt": phone_time(self.received_at)}  # fmt: skip


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class PhoneWebhooks:
    """Needs from the phone: its credentials, HTTP client, `_call`, `_tasks` and `scale`."""

    credentials: Credentials | None
    app_version: str
    sim_numbers: tuple[int, ...]
    webhook_gate: asyncio.Event | None
    webhooks: list[Any]
    scale: float
    _http: PhoneHTTP
    _tasks: list[asyncio.Task[None]]

    def init_webhooks(self, skip_processed_on_export: bool, webhook_retries: int) -> None:
        self.skip_processed_on_export = skip_processed_on_export  # False: app < 1.65.2
        self.webhook_retries = webhook_retries
        self.signing_key = secrets.token_hex(4)  # the app's random 8-character key
        self.inbox: list[InboxSms] = []
        self.mms_inbox: list[InboxMms] = []
        self.processed: set[str] = set()  # inbox message ids already handled
        self.webhook_posts: list[tuple[str, int]] = []  # (event, status) of each post
        self.webhook_sync_failures = 0

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Answer:
        raise NotImplementedError

    async def sync_webhooks(self) -> None:
        """`GET /webhooks` replaces the list; an event its release does not know fails the
        sync (the list stays as it was), as in the app."""
        hooks = (await self._call("GET", "/webhooks")).json()
        known = app_events(self.app_version)
        for hook in hooks:
            if hook.get("event") not in known or not hook.get("id"):
                self.webhook_sync_failures += 1
                raise ValueError(f"webhook the app cannot parse: {hook}")
        self.webhooks = hooks

    def emit(self, event: str, payload: dict[str, Any]) -> None:
        """Post `event` to every webhook of that event, each in its own retrying task."""
        assert self.credentials is not None
        for hook in self.webhooks:
            if hook["event"] != event:
                continue
            envelope = {
                "id": secrets.token_urlsafe(15), "webhookId": hook["id"], "event": event,
                "deviceId": self.credentials.id,
                "payload": {k: v for k, v in payload.items() if v is not None},
            }  # fmt: skip
            self._tasks.append(asyncio.create_task(self._deliver(hook["url"], envelope)))

    async def _deliver(self, url: str, envelope: dict[str, Any]) -> None:
        body = json.dumps(envelope).encode()
        if self.webhook_gate is not None:
            await self.webhook_gate.wait()  # the app's queue waits for a network
        for attempt in range(self.webhook_retries):
            stamp = str(int(time.time()))
            signature = hmac.new(
                self.signing_key.encode(), body + stamp.encode(), hashlib.sha256
            ).hexdigest()
            headers = {"Content-Type": "application/json", "X-Timestamp": stamp,
                       "X-Signature": signature}  # fmt: skip
            try:
                response = await self._http.request(
                    "POST", url, headers=headers, body=body, raise_for_status=False
                )
                self.webhook_posts.append((envelope["event"], response.status_code))
                if response.is_success:
                    return
            except HTTPError:
                self.webhook_posts.append((envelope["event"], 0))
            await asyncio.sleep(5 * 2**attempt * self.scale)

    def _emit_state(self, message: LocalMessage, number: str) -> None:
        state = message.recipients[number]
        event, field_name = STATE_EVENTS[state]
        sim = message.sim_number or self.sim_numbers[0]  # the SIM used, as the app reports it
        payload: dict[str, Any] = {
            "messageId": message.id, "phoneNumber": number, "recipient": number,
            "sender": own_number(sim), "simNumber": sim,
            field_name: phone_time(datetime.now(UTC)),
        }  # fmt: skip
        if state == "Failed":
            payload["reason"] = message.errors.get(number)
        if state == "Sent":
            payload["partsCount"] = 1
        self.emit(event, payload)

    def receive_sms(self, sender: str, text: str, received_at: datetime | None = None) -> InboxSms:
        """An SMS arrives: it goes to the inbox and out as `sms:received`."""
        return self._receive(sender, text, None, received_at)

    def receive_data_sms(self, sender: str, data: bytes) -> InboxSms:
        return self._receive(sender, None, base64.b64encode(data).decode(), None)

    def _receive(
        self, sender: str, text: str | None, data: str | None, received_at: datetime | None
    ) -> InboxSms:
        at = received_at or datetime.now(UTC)
        digest = hashlib.sha256(f"{sender}|{text}|{data}|{at.isoformat()}".encode()).hexdigest()
        sms = InboxSms(digest[:32], sender, text, data, at)
        self.inbox.append(sms)
        self.processed.add(sms.message_id)
        self._emit_received(sms)
        return sms

    def _emit_received(self, sms: InboxSms) -> None:
        payload: dict[str, Any] = {
            "messageId": sms.message_id, "sender": sms.sender, "phoneNumber": sms.sender,
            "simNumber": 1, "receivedAt": phone_time(sms.received_at),
        }  # fmt: skip
        if sms.text is not None:
            self.emit("sms:received", {**payload, "message": sms.text})
        else:
            self.emit("sms:data-received", {**payload, "data": sms.data})

    def receive_mms(
        self,
        sender: str,
        subject: str | None,
        body: str | None,
        parts: list[tuple[str, str | None, bytes | None]],
        received_at: datetime | None = None,
    ) -> InboxMms:
        """An MMS arrives: `mms:received` (the notification), then `mms:downloaded`."""
        at = received_at or datetime.now(UTC)
        digest = hashlib.sha256(f"{sender}|{subject}|{body}|{at.isoformat()}".encode()).hexdigest()
        mms = InboxMms(digest[:32], sender, subject, body, parts, at)
        self.mms_inbox.append(mms)
        self.processed.add(mms.message_id)
        self.emit("mms:received", mms.received_payload())
        self.emit("mms:downloaded", mms.downloaded_payload())
        return mms

    def post_batch(self, event: str, payloads: list[dict[str, Any]]) -> None:
        """A build with batch support posts `{"messages": [...]}` to the URL of the batch's
        single event (smsgw lists no batch events: the v1.68 app cannot parse them)."""
        assert self.credentials is not None
        single = {"sms:batch:received": "sms:received", "mms:batch:downloaded": "mms:downloaded"}
        [hook] = [h for h in self.webhooks if h["event"] == single[event]][:1]
        envelope = {"id": secrets.token_urlsafe(15), "webhookId": hook["id"], "event": event,
                    "deviceId": self.credentials.id, "payload": {"messages": payloads}}  # fmt: skip
        self._tasks.append(asyncio.create_task(self._deliver(hook["url"], envelope)))

    def ping(self, health: dict[str, Any] | None = None) -> None:
        """The app's `system:ping` (protocol §5): `{"health": ...}`, by default passing with
        no checks."""
        self.emit("system:ping", {"health": health or {"status": "pass", "checks": {}}})

    def _export(self, data: dict[str, str]) -> None:
        """Replay what was received in [since, until]: SMS, and downloaded MMS when
        `messageTypes` names MMS (only these two are scanned, as in the app)."""
        since, until = _parse_time(data["since"]), _parse_time(data["until"])
        kinds = data.get("messageTypes", "SMS").split(",")
        found: list[InboxSms | InboxMms] = []
        if "SMS" in kinds:
            found += [sms for sms in self.inbox if sms.text is not None]
        if "MMS" in kinds:
            found += self.mms_inbox
        for message in found:
            if not since <= message.received_at <= until:
                continue
            if self.skip_processed_on_export and message.message_id in self.processed:
                continue
            self.processed.add(message.message_id)
            if data.get("triggerWebhooks", "true") == "false":
                continue
            if isinstance(message, InboxMms):
                self.emit("mms:downloaded", message.downloaded_payload())
            else:
                self._emit_received(message)
