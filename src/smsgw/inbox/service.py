"""Inbox use cases: store what a phone received (once), list it, ask phones to replay it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.engine import Database
from smsgw.domain import clock, ids
from smsgw.domain.errors import InvalidInput
from smsgw.events.hub import Event, EventHub, PhoneEvent
from smsgw.inbox import repository
from smsgw.inbox.repository import InboxFilter

TYPE_OF_EVENT = {"sms:received": "SMS", "sms:data-received": "DATA_SMS"}
ID_LENGTH = 21


@dataclass(frozen=True)
class Received:
    """What a phone posted about one received message."""

    type: str
    message_id: str
    sender: str | None
    recipient: str | None
    sim_number: int | None
    text: str | None
    data: str | None
    received_at: str | None


#: Phones have a handful of SIM slots; anything else posted as a slot number is dropped.
MAX_SIM = 255


def parse(event: str, payload: dict[str, Any]) -> Received:
    """Read an `sms:received` / `sms:data-received` payload; InvalidInput naming what is wrong."""
    message_id = payload.get("messageId")
    if not isinstance(message_id, str) or not message_id or len(message_id) > 128:
        raise InvalidInput("payload.messageId: required, a string of at most 128 characters")
    content_field = "message" if event == "sms:received" else "data"
    content = payload.get(content_field)
    if not isinstance(content, str):
        raise InvalidInput(f"payload.{content_field}: required, a string")
    sim = payload.get("simNumber")
    sender = payload.get("sender") or payload.get("phoneNumber")
    return Received(
        type=TYPE_OF_EVENT[event], message_id=message_id,
        sender=str(sender)[:128] if sender is not None else None,
        recipient=str(payload["recipient"])[:128] if payload.get("recipient") else None,
        sim_number=sim if type(sim) is int and 0 <= sim <= MAX_SIM else None,
        text=content if event == "sms:received" else None,
        data=content if event != "sms:received" else None,
        received_at=at if isinstance(at := payload.get("receivedAt"), str) else None,
    )  # fmt: skip


def dedupe_key(device_id: str, item: Received) -> str:
    return f"{device_id}:{item.type}:{item.message_id}"


async def store(conn: AsyncConnection, user_id: int, device_id: str, item: Received) -> bool:
    """Keep a received message unless this phone posted it before; True when new."""
    key = dedupe_key(device_id, item)
    if await repository.exists(conn, user_id, key):
        return False
    now = clock.now()
    try:
        received_at = clock.parse_timestamp(item.received_at) if item.received_at else now
    except ValueError:
        received_at = now
    await repository.add(
        conn,
        {
            "ext_id": ids.random_token(ID_LENGTH), "user_id": user_id, "device_id": device_id,
            "dedupe_key": key, "type": item.type, "message_id": item.message_id,
            "sender": item.sender, "recipient": item.recipient, "sim_number": item.sim_number,
            "text": item.text, "data": item.data, "received_at": received_at, "created_at": now,
        },
    )  # fmt: skip
    return True


async def list_inbox(
    db: Database, user_id: int, wanted: InboxFilter, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    async with db.read() as conn:
        return await repository.page(conn, user_id, wanted, limit, offset)


def request_export(
    hub: EventHub,
    user_id: int,
    since: datetime,
    until: datetime,
    device_id: str | None = None,
    types: Sequence[str] | None = None,
) -> None:
    """Ask the user's connected phones (or the one given) to replay what they received in
    [since, until]: `MessagesExportRequested`. The phones post each message to smsgw's hub,
    so the replay lands in the inbox (without duplicates)."""
    data = {
        "since": clock.format_timestamp(since),
        "until": clock.format_timestamp(until),
        "webhookDelivery": "Individual",
        "triggerWebhooks": "true",  # the phone posts to smsgw: that is how the inbox fills
    }
    if types:
        data["messageTypes"] = ",".join(types)
    owned = hub.devices_of(user_id)
    targets = owned & {device_id} if device_id else owned
    hub.publish(targets, Event(PhoneEvent.MESSAGES_EXPORT_REQUESTED, data))
