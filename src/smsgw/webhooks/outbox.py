"""Writing events to the durable outbox, inside the caller's transaction.

Call these with the connection of the transaction that changes the state the event
describes, so the event exists exactly when the state does. Each event is stored once per
owner and `dedupe_key` (smsgw may learn it from a phone's post, its state report, or both)
and gets one delivery row per enabled webhook that subscribes to it; with no such webhook
nothing is written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.domain import clock, ids
from smsgw.webhooks import repository
from smsgw.webhooks.events import STATE_EVENTS, STATE_TIME_FIELD

EVENT_ID_LENGTH = 21


def state_key(event: str, message_id: str, phone_number: str) -> str:
    """The dedupe key of a message event: one per message, recipient and event."""
    return f"state:{event}:{message_id}:{phone_number.lstrip('+')}"


async def subscribed(
    conn: AsyncConnection, user_id: int, device_id: str | None, event: str
) -> bool:
    """Whether `record` would store `event` for anyone (so that a caller builds no payload
    nobody would get): an enabled webhook of the owner for it, covering the phone."""
    return bool(await repository.matching(conn, user_id, device_id, event))


async def record(
    conn: AsyncConnection,
    user_id: int,
    device_id: str | None,
    event: str,
    dedupe_key: str,
    payload: dict[str, Any],
) -> bool:
    """Store `event` for delivery unless it is known already; True when newly stored."""
    dedupe_key = dedupe_key[:512]  # as stored: the check must compare what the insert keeps
    targets = await repository.matching(conn, user_id, device_id, event)
    if not targets or await repository.event_exists(conn, user_id, dedupe_key):
        return False
    now = clock.now()
    event_pk = await repository.add_event(
        conn,
        {
            "event_id": ids.random_token(EVENT_ID_LENGTH), "user_id": user_id,
            "device_id": device_id, "event": event, "dedupe_key": dedupe_key,
            "payload": payload, "created_at": now,
        },
    )  # fmt: skip
    await repository.add_deliveries(conn, event_pk, targets, now)
    return True


def state_payload(
    event: str, message_id: str, phone_number: str, error: str | None, at: datetime
) -> dict[str, Any]:
    """The upstream payload of `sms:sent|delivered|failed|cancelled` for one recipient."""
    payload: dict[str, Any] = {
        "messageId": message_id,
        "phoneNumber": phone_number,
        "recipient": phone_number,
        STATE_TIME_FIELD[event]: clock.format_timestamp(at),
    }
    if event == "sms:failed":
        payload["reason"] = error or "unknown error"
    return payload


async def record_state(
    conn: AsyncConnection,
    user_id: int,
    device_id: str | None,
    message_id: str,
    phone_number: str,
    state: str,
    error: str | None,
    at: datetime,
) -> None:
    """Events of one recipient reaching `state` (from a phone's state report)."""
    for event in STATE_EVENTS.get(state, ()):
        payload = state_payload(event, message_id, phone_number, error, at)
        key = state_key(event, message_id, phone_number)
        await record(conn, user_id, device_id, event, key, payload)


async def record_server_state(
    conn: AsyncConnection, message_pks: list[int], state: str, error: str | None, at: datetime
) -> None:
    """Events of messages smsgw itself moved to `state` (expired: Failed; cancelled before
    any phone took it: Cancelled), one per recipient. Call in the transaction that moved them.
    """
    if not message_pks:
        return
    for user_id, message_id, device_id, number in await repository.recipients_of(conn, message_pks):
        await record_state(conn, user_id, device_id, message_id, number, state, error, at)
