"""Bulk-send use cases of the dashboard: check an upload and keep it as a preview, confirm
it, send it in chunks under a lease, show its progress; the same sending as `POST
/messages` (bulk/sending.py). docs/dashboard.md#bulk-send says how it behaves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from smsgw.bulk import repository
from smsgw.bulk.prepare import Prepared, prepare
from smsgw.bulk.repository import BatchRecord, ItemRecord
from smsgw.bulk.sending import Outcome, send_many
from smsgw.db.engine import Database, delete_older
from smsgw.domain import clock, ids
from smsgw.domain.errors import Conflict, InvalidInput, NotFound
from smsgw.events.user_feed import notify
from smsgw.messages import service as messages
from smsgw.messages.repository import MessageRecord

#: How long a preview waits for its confirmation; then it is deleted.
PREVIEW_TTL = timedelta(hours=1)
#: How long a process's lease on sending a batch lasts without renewal (every chunk renews).
LEASE = timedelta(seconds=60)
#: Rows queued per chunk (about one group-commit transaction: db/engine.py MAX_BATCH).
CHUNK = 256
PREVIEW_ROWS = 10
#: At most this many invalid or refused rows are listed on the page (all are counted).
PROBLEMS_SHOWN = 1000
#: Told of each chunk's messages: (owner, messages queued) (wakes phones, webhooks).
AfterChunk = Callable[[int, list[MessageRecord]], None]


@dataclass(frozen=True)
class Upload:
    """What the owner uploaded and chose: the file, the text, the options of every row."""

    file_name: str
    content: bytes
    text: str
    device_id: str | None = None
    sim_number: int | None = None
    priority: int = 0
    with_delivery_report: bool = True


@dataclass(frozen=True)
class BatchView:
    batch: BatchRecord
    sample: list[ItemRecord]
    problems: list[ItemRecord]
    #: The batch's queued messages by their state now.
    states: dict[str, int] = field(default_factory=dict)


def _rows(prepared: Prepared) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = [
        {"row": r.row, "phone": r.phone, "text": r.text, "parts": r.parts,
         "message_id": ids.message_id(), "state": repository.WAITING, "error": None}
        for r in prepared.rows
    ]  # fmt: skip
    rows += [
        {"row": i.row, "phone": i.phone[:128], "text": None, "parts": 0, "message_id": None,
         "state": repository.INVALID, "error": i.reason}
        for i in prepared.invalid
    ]  # fmt: skip
    rows.sort(key=lambda row: int(str(row["row"])))
    return [{"position": n, **row} for n, row in enumerate(rows)]


async def preview(db: Database, region: str | None, user_id: int, upload: Upload) -> str:
    """Check the upload and keep it as a preview of the owner's (its id); InvalidInput (or
    TooLarge) when the file or the text cannot be used at all. Nothing is sent."""
    prepared = await asyncio.to_thread(prepare, upload.content, upload.text, region)
    if not prepared.rows and not prepared.invalid:
        raise InvalidInput("the file has a header row but no rows to send")
    now = clock.now()
    batch_id = ids.message_id()
    values = {
        "id": batch_id, "user_id": user_id, "state": repository.PREVIEW,
        "file_name": upload.file_name[:255], "template": upload.text,
        "device_id": upload.device_id, "sim_number": upload.sim_number,
        "priority": upload.priority, "with_delivery_report": upload.with_delivery_report,
        "total": len(prepared.rows), "invalid": len(prepared.invalid), "blank": prepared.blank,
        "parts": prepared.parts, "accepted": 0, "failed": 0, "created_at": now,
        "updated_at": now, "expires_at": now + PREVIEW_TTL, "lease_until": None,
    }  # fmt: skip
    async with db.write() as conn:
        await repository.create(conn, values, _rows(prepared))
    return batch_id


async def view(db: Database, user_id: int, batch_id: str) -> BatchView:
    """The owner's batch, its first rows, its invalid and refused rows, and its messages'
    states; NotFound when it is not the owner's (or a preview that expired)."""
    async with db.read() as conn:
        batch = await repository.find(conn, user_id, batch_id)
        if batch is None or _expired(batch):
            raise NotFound("no such bulk send of yours (a preview is kept for an hour)")
        to_send = (repository.WAITING, repository.ACCEPTED, repository.REFUSED)
        sample = await repository.rows_of(conn, batch_id, to_send, PREVIEW_ROWS)
        bad = (repository.INVALID, repository.REFUSED)
        problems = await repository.rows_of(conn, batch_id, bad, PROBLEMS_SHOWN)
        states = await repository.message_states(conn, user_id, batch_id)
    return BatchView(batch, sample, problems, states)


def _expired(batch: BatchRecord) -> bool:
    return batch.expires_at is not None and batch.expires_at <= clock.now()


async def recent(db: Database, user_id: int, limit: int = 20) -> list[BatchRecord]:
    async with db.read() as conn:
        found = await repository.recent(conn, user_id, limit)
    return [batch for batch in found if not _expired(batch)]


async def confirm(db: Database, user_id: int, batch_id: str) -> bool:
    """Start sending the owner's preview: True when this call started it (the caller then
    sends it: `send`), False when it was confirmed already (a second click, a resubmitted
    form: nothing more is sent). NotFound for no such batch; Conflict for an expired one."""
    now = clock.now()
    async with db.write() as conn:
        if await repository.confirm(conn, user_id, batch_id, now, now + LEASE):
            return True
        batch = await repository.find(conn, user_id, batch_id)
    if batch is None:
        raise NotFound("no such bulk send of yours")
    if batch.state == repository.PREVIEW:
        raise Conflict("this preview has expired: upload the file again")
    return False


async def discard(db: Database, user_id: int, batch_id: str) -> None:
    """Delete the owner's preview; Conflict when it is being sent or was sent."""
    async with db.write() as conn:
        if await repository.discard(conn, user_id, batch_id):
            return
        batch = await repository.find(conn, user_id, batch_id)
    if batch is None:
        raise NotFound("no such bulk send of yours")
    raise Conflict("this bulk send was confirmed: it can no longer be discarded")


async def stale(db: Database) -> list[str]:
    """Batches being sent whose sender stopped (its lease ran out)."""
    async with db.read() as conn:
        return await repository.stale(conn, clock.now())


async def take(db: Database, batch_id: str) -> bool:
    """Take over sending a batch whose sender stopped; True when this process won it."""
    now = clock.now()
    async with db.write() as conn:
        return await repository.take(conn, batch_id, now, now + LEASE)


def _command(batch: BatchRecord, item: ItemRecord) -> messages.SendCommand:
    return messages.SendCommand(
        phone_numbers=[item.phone], text=item.text, ext_id=item.message_id,
        device_id=batch.device_id, sim_number=batch.sim_number, priority=batch.priority,
        with_delivery_report=batch.with_delivery_report,
    )  # fmt: skip


def _outcome(item: ItemRecord, sent: Outcome) -> tuple[int, str, str | None]:
    # A duplicate id is the batch's own: an earlier run queued the row and stopped before
    # recording it (ids are chosen at upload, so nothing else holds them).
    if isinstance(sent, MessageRecord) or (
        isinstance(sent, Conflict) and sent.message == messages.DUPLICATE_ID
    ):
        return item.position, repository.ACCEPTED, None
    return item.position, repository.REFUSED, sent.message


async def send_chunk(db: Database, region: str | None, batch_id: str, after: AfterChunk) -> bool:
    """Queue the batch's next CHUNK waiting rows, record each outcome, renew the lease;
    False when no row was left (the batch is then done). Run by the lease holder only."""
    async with db.read() as conn:
        batch = await repository.owner_of(conn, batch_id)
        waiting = await repository.rows_of(conn, batch_id, (repository.WAITING,), CHUNK)
    if batch is None or batch.state != repository.SENDING:
        return False
    if not waiting:
        async with db.write() as conn:
            await repository.finish(conn, batch_id, clock.now())
        notify(db, batch.user_id)
        return False
    commands = [_command(batch, item) for item in waiting]
    sent = await send_many(db, region, batch.user_id, commands)
    now = clock.now()
    async with db.write() as conn:
        outcomes = [_outcome(item, one) for item, one in zip(waiting, sent, strict=True)]
        await repository.record(conn, batch_id, outcomes, now)
        await repository.renew(conn, batch_id, now + LEASE)
        last = len(waiting) < CHUNK
        if last:  # done in the same transaction as its last rows' outcomes
            await repository.finish(conn, batch_id, now)
    after(batch.user_id, [one for one in sent if isinstance(one, MessageRecord)])
    notify(db, batch.user_id)
    return not last


async def send(db: Database, region: str | None, batch_id: str, after: AfterChunk) -> None:
    """Queue every waiting row of a batch this process holds the lease of, chunk by chunk."""
    more = True
    while more:  # each chunk awaits its commits: requests get their turns in between
        more = await send_chunk(db, region, batch_id, after)


async def prune(db: Database, retention_days: int | None) -> int:
    """Delete the previews past their expiry (never confirmed) and, with a retention, the
    batches sent longer ago than that (their messages go then too); how many."""
    table = repository.batches
    preview = table.c.state == repository.PREVIEW
    gone = await delete_older(db, table.c.expires_at, clock.now(), preview)
    if retention_days is not None:
        before = clock.now() - timedelta(days=retention_days)
        gone += await delete_older(db, table.c.updated_at, before, table.c.state == repository.DONE)
    return gone
