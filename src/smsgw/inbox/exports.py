"""Inbox exports: a refresh recorded per phone, sent to it (now, or when it next connects),
watched while the phone replays, and closed once quiet with the events it asked for.

Closing is a conditional UPDATE (open -> done, unchanged since read), so with several
processes on one database exactly one writes the export's events, in the same transaction.
Those events are bounded: only kinds some webhook subscribes to are read, rows are read a
page at a time, batches hold at most 100 messages and 256 KiB, and no payload carries
attachment bytes (fetched by id: `GET /inbox/{id}/attachments/{partId}`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.engine import Database, UnitConnection, delete_older
from smsgw.devices import repository as devices
from smsgw.domain import clock
from smsgw.events.hub import Event, EventHub, PhoneEvent
from smsgw.inbox import repository
from smsgw.inbox.schemas import EVENT_OF_TYPE, Received, payload_of, received_moment
from smsgw.webhooks import outbox
from smsgw.webhooks.events import BATCH_OF_TYPE

DELIVERIES = ("Disabled", "Individual", "Batch")
#: Messages in one batch event, as upstream's batches.
BATCH_SIZE = 100
#: Bytes of the messages' JSON in one batch event (the envelope adds a few hundred).
BATCH_MAX_BYTES = 256 * 1024
#: Inbox rows read at a time while writing an export's events.
PAGE_SIZE = 200
SETTLE_LIMIT = 20
#: Failed attempts at closing an export (in one process) before it is given up.
MAX_FAILURES = 3
log = logging.getLogger("smsgw.inbox")


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
    # Only the process holding a phone's stream marks its export requested, once the event
    # is in that stream; a phone held by another server process is asked of that process.
    await send_pending(db, hub, [t for t in targets if hub.holds(t)])
    hub.ask_holders(EXPORTS_ASK, [t for t in targets if not hub.holds(t)])
    return len(targets)


#: What `request` asks of the server process holding a phone's stream (events/shared_hub.py).
EXPORTS_ASK = "exports"


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


async def touch_unit(
    conn: UnitConnection, user_id: int, device_id: str, items: Sequence[Received]
) -> None:
    """Posted messages in range of the phone's open exports keep them open a while (one
    look-up for a whole batch post)."""
    found = await repository.open_exports_of_unit(conn, user_id, device_id) if items else []
    if not found:
        return
    hits: set[int] = set()
    for item in items:
        at = received_moment(item)
        hits.update(
            export.id for export in found
            if item.type in export.types.split(",")
            and (at is None or export.since <= at <= export.until)
        )  # fmt: skip
    if hits:
        await repository.touch_unit(conn, sorted(hits), clock.now())


async def expire(db: Database, max_age_seconds: float) -> int:
    """Give up exports no phone picked up within `max_age_seconds`."""
    cutoff = clock.now() - timedelta(seconds=max_age_seconds)
    async with db.read() as conn:  # look first: a write would hold up the API (db/engine.py)
        if not await repository.expirable(conn, cutoff):
            return 0
    async with db.write() as conn:
        return await repository.expire(conn, cutoff)


async def prune(db: Database, created_before: datetime) -> int:
    """Forget exports no longer open (done, expired, failed) created before `created_before`,
    in small batches; how many went."""
    table = repository.exports
    return await delete_older(
        db, table.c.created_at, created_before, table.c.state != repository.OPEN
    )


async def settle(
    db: Database, settle_seconds: float, deliver: bool, failures: dict[int, int] | None = None
) -> int:
    """Close exports quiet for `settle_seconds` since the phone got them or last posted in
    their range, writing their events (unless `deliver` is off: direct mode). Returns how
    many were closed.

    An export whose closing raises is logged and left open for the next call; once it has
    failed `MAX_FAILURES` times (counted in `failures`, kept by the caller across calls) it
    is given up: state `failed`, no events. Other exports are closed meanwhile."""
    async with db.read() as conn:
        quiet_since = clock.now() - timedelta(seconds=settle_seconds)
        due = await repository.settled(conn, quiet_since, SETTLE_LIMIT)
    failures = {} if failures is None else failures
    closed = 0
    for export in due:
        try:
            closed += await _close(db, export, deliver)
        except Exception as error:  # one export must not stop the others
            await _failed(db, export["id"], error, failures)
        else:
            failures.pop(export["id"], None)
    return closed


async def _close(db: Database, export: dict[str, Any], deliver: bool) -> int:
    async with db.write() as conn:
        if not await repository.close(conn, export):
            return 0  # another process closed it, or the phone posted in between
        if deliver:
            await _emit(conn, export)
    return 1


async def _failed(db: Database, export_id: int, error: Exception, failures: dict[int, int]) -> None:
    """Count a failed close; give the export up after `MAX_FAILURES`. The log names the
    export and the kind of error only (the error's text may quote message payloads)."""
    count = failures[export_id] = failures.get(export_id, 0) + 1
    gave_up = count >= MAX_FAILURES
    log.error(
        "inbox export %s: closing failed (%s), attempt %d of %d%s", export_id,
        type(error).__name__, count, MAX_FAILURES, "; given up" if gave_up else "",
    )  # fmt: skip
    if gave_up:
        failures.pop(export_id, None)
        async with db.write() as conn:
            await repository.give_up(conn, export_id)


async def _emit(conn: AsyncConnection, export: dict[str, Any]) -> None:
    """The export's events, keyed by its id so that they are written once; nothing is read
    or built for a kind no webhook of the owner would get."""
    user_id, device_id = export["user_id"], export["device_id"]
    delivery = export["delivery"]
    if delivery not in ("Batch", "Individual"):
        return
    event_of = BATCH_OF_TYPE if delivery == "Batch" else EVENT_OF_TYPE
    kinds = [
        kind for kind in export["types"].split(",")
        if await outbox.subscribed(conn, user_id, device_id, event_of[kind])
    ]  # fmt: skip
    if delivery == "Batch":
        for kind in kinds:
            await _emit_batches(conn, export, kind)
    elif kinds:  # new messages had their individual events when first stored
        key = f"export:{export['id']}"
        async for row in _rows(conn, export, kinds, before=export["created_at"]):
            event, payload = EVENT_OF_TYPE[row["type"]], payload_of(row)
            await outbox.record(
                conn, user_id, device_id, event, f"{key}:{row['dedupe_key']}", payload
            )


async def _rows(
    conn: AsyncConnection,
    export: dict[str, Any],
    kinds: Sequence[str],
    before: datetime | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """The export's inbox rows of these kinds, oldest first, read `PAGE_SIZE` at a time."""
    after = None
    while True:
        rows = await repository.in_range(conn, export, kinds, PAGE_SIZE, after, before)
        for row in rows:
            yield row
        if len(rows) < PAGE_SIZE:
            return
        after = (rows[-1]["received_at"], rows[-1]["id"])


async def _emit_batches(conn: AsyncConnection, export: dict[str, Any], kind: str) -> None:
    """Every message of one kind in range, oldest first, in batches of at most `BATCH_SIZE`
    messages and `BATCH_MAX_BYTES` of payload (a message bigger than that alone goes in a
    batch of its own); no batch at all without messages."""
    event = BATCH_OF_TYPE[kind]
    batch: list[dict[str, Any]] = []
    size = number = 0

    async def flush() -> None:
        nonlocal batch, size, number
        key = f"export:{export['id']}:{event}:{number}"
        payload = {"messages": batch}
        await outbox.record(conn, export["user_id"], export["device_id"], event, key, payload)
        batch, size, number = [], 0, number + 1

    async for row in _rows(conn, export, [kind]):
        message = payload_of(row)
        length = len(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()) + 1
        if batch and (len(batch) == BATCH_SIZE or size + length > BATCH_MAX_BYTES):
            await flush()
        batch.append(message)
        size += length
    if batch:
        await flush()
