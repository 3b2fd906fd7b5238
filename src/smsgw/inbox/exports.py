"""Inbox exports: a refresh recorded per phone, sent to it (now, or when it next connects),
watched while the phone replays, and closed once quiet with the events it asked for.

Closing is a conditional UPDATE (open -> done, unchanged since read), so with several
processes on one database exactly one writes the export's events, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.engine import Database
from smsgw.devices import repository as devices
from smsgw.domain import clock
from smsgw.events.hub import Event, EventHub, PhoneEvent
from smsgw.inbox import repository
from smsgw.inbox.schemas import EVENT_OF_TYPE, Received, payload_of, received_moment
from smsgw.webhooks import outbox
from smsgw.webhooks.events import BATCH_OF_TYPE

DELIVERIES = ("Disabled", "Individual", "Batch")
BATCH_SIZE = 100
SETTLE_LIMIT = 20


def delivery_of(webhook_delivery: str | None, trigger_webhooks: bool | None) -> str:
    """Upstream's rule: `webhookDelivery` if set, else Individual if `triggerWebhooks`."""
    if webhook_delivery is not None:
        return webhook_delivery
    return "Individual" if trigger_webhooks else "Disabled"


def covered(types: Sequence[str] | None) -> str:
    """The inbox types an export covers: those asked (SMS by default, as the app), and
    downloaded MMS with MMS (the phone's MMS scan posts them as `mms:downloaded`)."""
    kinds = list(types or ("SMS",))
    if "MMS" in kinds:
        kinds.append("MMS_DOWNLOADED")
    return ",".join(dict.fromkeys(kinds))


def _event(export: dict[str, Any]) -> Event:
    """What the phone is told: always Individual posts to smsgw (that fills the inbox)."""
    return Event(PhoneEvent.MESSAGES_EXPORT_REQUESTED, {
        "since": clock.format_timestamp(export["since"]),
        "until": clock.format_timestamp(export["until"]),
        "messageTypes": export["types"],
        "webhookDelivery": "Individual",
        "triggerWebhooks": "true",
    })  # fmt: skip


async def request(
    db: Database,
    hub: EventHub,
    user_id: int,
    span: tuple[datetime, datetime],
    device_id: str | None = None,
    types: Sequence[str] | None = None,
    delivery: str = "Disabled",
) -> int:
    """Record an export per target phone (the one given if it is the caller's, else all of
    theirs; a phone of someone else reaches nothing) and send it to those connected now.
    Returns how many phones it was recorded for."""
    now = clock.now()
    async with db.write() as conn:
        owned = [d.id for d in await devices.of_user(conn, user_id)]
        targets = [d for d in owned if d == device_id] if device_id else owned
        await repository.add_exports(conn, [
            {"user_id": user_id, "device_id": target, "since": span[0], "until": span[1],
             "types": covered(types), "delivery": delivery,
             "state": repository.OPEN, "created_at": now, "last_activity_at": now}
            for target in targets
        ])  # fmt: skip
    await send_pending(db, hub, [t for t in targets if hub.is_connected(t)])
    return len(targets)


async def send_pending(db: Database, hub: EventHub, device_ids: Sequence[str]) -> None:
    """Send these connected phones their exports not sent yet (a phone that just opened its
    event stream gets what was asked while it was away)."""
    if not device_ids:
        return
    async with db.read() as conn:
        pending = await repository.unrequested(conn, device_ids)
    sent = [
        export["id"] for export in pending if hub.publish([export["device_id"]], _event(export))
    ]
    if sent:
        async with db.write() as conn:
            await repository.mark_requested(conn, sent, clock.now())


async def touch(conn: AsyncConnection, user_id: int, device_id: str, item: Received) -> None:
    """A posted message in range of the phone's open exports keeps them open a while."""
    found = await repository.open_exports_of(conn, user_id, device_id)
    if not found:
        return
    at = received_moment(item)
    hits = [
        export.id for export in found
        if item.type in export.types.split(",")
        and (at is None or export.since <= at <= export.until)
    ]  # fmt: skip
    if hits:
        await repository.touch(conn, hits, clock.now())


async def expire(db: Database, max_age_seconds: float) -> int:
    """Give up exports no phone picked up within `max_age_seconds`."""
    async with db.write() as conn:
        return await repository.expire(conn, clock.now() - timedelta(seconds=max_age_seconds))


async def settle(db: Database, settle_seconds: float, deliver: bool) -> int:
    """Close exports quiet for `settle_seconds` since the phone got them or last posted in
    their range, writing their events (unless `deliver` is off: direct mode). Returns how
    many were closed."""
    async with db.read() as conn:
        quiet_since = clock.now() - timedelta(seconds=settle_seconds)
        due = await repository.settled(conn, quiet_since, SETTLE_LIMIT)
    closed = 0
    for export in due:
        async with db.write() as conn:
            if not await repository.close(conn, export):
                continue  # another process closed it, or the phone posted in between
            closed += 1
            if deliver:
                await _emit(conn, export)
    return closed


async def _emit(conn: AsyncConnection, export: dict[str, Any]) -> None:
    """The export's events, keyed by its id so that they are written once."""
    user_id, device_id, key = export["user_id"], export["device_id"], f"export:{export['id']}"
    if export["delivery"] == "Batch":
        for event, number, messages in await _batches(conn, export):
            payload = {"messages": messages}
            await outbox.record(conn, user_id, device_id, event, f"{key}:{event}:{number}", payload)
    elif export["delivery"] == "Individual":  # new messages had theirs when first stored
        rows = await repository.in_range(conn, export, before=export["created_at"])
        found = await _parts(conn, rows)
        for row in rows:
            event, payload = EVENT_OF_TYPE[row["type"]], payload_of(row, found.get(row["id"], []))
            await outbox.record(
                conn, user_id, device_id, event, f"{key}:{row['dedupe_key']}", payload
            )


async def _parts(
    conn: AsyncConnection, rows: list[dict[str, Any]]
) -> dict[int, list[dict[str, Any]]]:
    mms = [row["id"] for row in rows if row["type"] == "MMS_DOWNLOADED"]
    return await repository.parts_of(conn, mms, with_data=True) if mms else {}


async def _batches(
    conn: AsyncConnection, export: dict[str, Any]
) -> list[tuple[str, int, list[dict[str, Any]]]]:
    """(batch event, number, payloads): every message in range by kind, oldest first, at
    most `BATCH_SIZE` to a batch; no batch at all for a kind without messages."""
    rows = await repository.in_range(conn, export)
    found = await _parts(conn, rows)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_kind.setdefault(row["type"], []).append(payload_of(row, found.get(row["id"], [])))
    return [
        (BATCH_OF_TYPE[kind], start // BATCH_SIZE, payloads[start : start + BATCH_SIZE])
        for kind, payloads in by_kind.items()
        for start in range(0, len(payloads), BATCH_SIZE)
    ]
