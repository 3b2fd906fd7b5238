"""Writing events to the durable outbox, inside the caller's transaction.

Call these with the connection of the transaction that changes the state the event
describes, so the event exists exactly when the state does. Each event is stored once per
owner and `dedupe_key` (smsgw may learn it from a phone's post, its state report, or both)
and gets one delivery row per enabled webhook that subscribes to it; with no such webhook
nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.engine import UnitConnection
from smsgw.domain import clock, ids
from smsgw.webhooks import repository
from smsgw.webhooks.events import STATE_EVENTS, STATE_TIME_FIELD

EVENT_ID_LENGTH = 21


@dataclass(frozen=True)
class PostWait:
    """The message events a phone posts to smsgw itself (hub mode), and how long such an
    event learned first from the phone's state report waits for that post: the post carries
    fields a state report has not (`sender`, `simNumber`, `partsCount`)."""

    events: frozenset[str] = frozenset()
    seconds: float = 0.0

    def due(self, event: str, now: datetime) -> datetime:
        return now + timedelta(seconds=self.seconds) if event in self.events else now


NO_WAIT = PostWait()


def state_key(event: str, message_id: str, phone_number: str) -> str:
    """The dedupe key of a message event: one per message, recipient and event."""
    return f"state:{event}:{message_id}:{phone_number.lstrip('+')}"


async def subscribed(
    conn: AsyncConnection, user_id: int, device_id: str | None, event: str
) -> bool:
    """Whether `record` would store `event` for anyone (so that a caller builds no payload
    nobody would get): an enabled webhook of the owner for it, covering the phone."""
    return bool(await repository.matching(conn, user_id, device_id, event))


def _event_row(
    user_id: int, device_id: str | None, event: str, dedupe_key: str, payload: dict[str, Any]
) -> dict[str, Any]:
    return {
        "event_id": ids.random_token(EVENT_ID_LENGTH), "user_id": user_id,
        "device_id": device_id, "event": event, "dedupe_key": dedupe_key,
        "payload": payload, "created_at": clock.now(),
    }  # fmt: skip


async def record(
    conn: AsyncConnection,
    user_id: int,
    device_id: str | None,
    event: str,
    dedupe_key: str,
    payload: dict[str, Any],
    due_at: datetime | None = None,
) -> bool:
    """Store `event` for delivery (at `due_at`, default now) unless it is known already;
    True when newly stored."""
    dedupe_key = dedupe_key[:512]  # as stored: the check must compare what the insert keeps
    targets = await repository.matching(conn, user_id, device_id, event)
    if not targets or await repository.event_exists(conn, user_id, dedupe_key):
        return False
    row = _event_row(user_id, device_id, event, dedupe_key, payload)
    event_pk = await repository.add_event(conn, row)
    now = row["created_at"]
    await repository.add_deliveries(conn, event_pk, targets, now, due_at or now)
    return True


class Matching:
    """The webhooks matching each (owner, phone, event), looked up once for a unit of work
    that records many events (a batch of state reports): valid within that unit only."""

    def __init__(self) -> None:
        self._found: dict[tuple[int, str | None, str], list[int]] = {}

    def known(self, user_id: int, device_id: str | None, event: str) -> list[int] | None:
        """The webhooks found already for (owner, phone, event); None when not looked up."""
        return self._found.get((user_id, device_id, event))

    async def of(
        self, conn: UnitConnection, user_id: int, device_id: str | None, event: str
    ) -> list[int]:
        key = (user_id, device_id, event)
        if key not in self._found:
            self._found[key] = await repository.matching_unit(conn, user_id, device_id, event)
        return self._found[key]


async def record_unit(
    conn: UnitConnection,
    user_id: int,
    device_id: str | None,
    event: str,
    dedupe_key: str,
    payload: dict[str, Any],
    due_at: datetime | None = None,
    matching: Matching | None = None,
) -> bool:
    """`record` in a unit of work of `Database.write_unit` (a plain DB-API connection);
    `matching`: the unit's lookups of matching webhooks, kept for its next events."""
    dedupe_key = dedupe_key[:512]
    if matching is None:
        targets = await repository.matching_unit(conn, user_id, device_id, event)
    else:
        targets = await matching.of(conn, user_id, device_id, event)
    if not targets or await repository.event_exists_unit(conn, user_id, dedupe_key):
        return False
    row = _event_row(user_id, device_id, event, dedupe_key, payload)
    event_pk = await repository.add_event_unit(conn, row)
    now = row["created_at"]
    await repository.add_deliveries_unit(conn, event_pk, targets, now, due_at or now)
    return True


async def complete_unit(
    conn: UnitConnection, user_id: int, dedupe_key: str, posted: dict[str, Any]
) -> bool:
    """Complete an event smsgw built from a state report with the phone's own post of it:
    while none of its deliveries has been attempted, the payload gains the post's fields (the
    post's values win) and the deliveries are due now. True when it was completed."""
    found = await repository.unattempted_event_unit(conn, user_id, dedupe_key[:512])
    if found is None:
        return False
    event_pk, stored = found
    await repository.complete_event_unit(conn, event_pk, {**stored, **posted}, clock.now())
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


def _state_events(
    message_id: str,
    phone_number: str,
    state: str,
    error: str | None,
    at: datetime,
    wait: PostWait,
) -> list[tuple[str, str, dict[str, Any], datetime]]:
    """(event, dedupe key, payload, due) of one recipient reaching `state`."""
    now = clock.now()
    return [
        (event, state_key(event, message_id, phone_number),
         state_payload(event, message_id, phone_number, error, at), wait.due(event, now))
        for event in STATE_EVENTS.get(state, ())
    ]  # fmt: skip


async def record_state(
    conn: AsyncConnection,
    user_id: int,
    device_id: str | None,
    message_id: str,
    phone_number: str,
    state: str,
    error: str | None,
    at: datetime,
    wait: PostWait = NO_WAIT,
) -> None:
    """Events of one recipient reaching `state` (from a phone's state report); those the
    phone also posts itself wait for that post as `wait` says (see `complete`)."""
    for event, key, payload, due in _state_events(message_id, phone_number, state, error, at, wait):
        await record(conn, user_id, device_id, event, key, payload, due)


async def record_state_unit(
    conn: UnitConnection,
    user_id: int,
    device_id: str | None,
    message_id: str,
    phone_number: str,
    state: str,
    error: str | None,
    at: datetime,
    wait: PostWait = NO_WAIT,
    matching: Matching | None = None,
) -> int:
    """`record_state` in a unit of work of `Database.write_unit`; how many it stored."""
    if matching is not None:  # no payload to build for events no webhook takes (most often)
        for event in STATE_EVENTS.get(state, ()):
            found = matching.known(user_id, device_id, event)
            if found is None:
                found = await matching.of(conn, user_id, device_id, event)
            if found:
                break
        else:
            return 0
    stored = 0
    for event, key, payload, due in _state_events(message_id, phone_number, state, error, at, wait):
        stored += await record_unit(conn, user_id, device_id, event, key, payload, due, matching)
    return stored


async def record_server_state(
    conn: AsyncConnection, message_pks: list[int], state: str, error: str | None, at: datetime
) -> None:
    """Events of messages smsgw itself moved to `state` (expired: Failed; cancelled before
    any phone took it: Cancelled), one per recipient it moved (one that was final already,
    as one opted out, had its event then). Call in the transaction that moved them.
    """
    if not message_pks:
        return
    moved = await repository.recipients_of(conn, message_pks, state)
    for user_id, message_id, device_id, number in moved:
        await record_state(conn, user_id, device_id, message_id, number, state, error, at)
