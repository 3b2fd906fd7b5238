"""Inbox use cases: store what a phone received (once), list it, hand out MMS parts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from smsgw.db.engine import Database, UnitConnection, delete_older
from smsgw.domain import clock, ids
from smsgw.domain.errors import NotFound
from smsgw.inbox import repository
from smsgw.inbox.repository import InboxFilter
from smsgw.inbox.schemas import TYPE_OF_EVENT, Received, parse, received_moment

__all__ = [
    "TYPE_OF_EVENT",
    "Received",
    "attachment",
    "dedupe_key",
    "list_inbox",
    "parse",
    "store_unit",
]
ID_LENGTH = 21


def dedupe_key(device_id: str, item: Received) -> str:
    return f"{device_id}:{item.type}:{item.message_id}"


async def store_unit(conn: UnitConnection, user_id: int, device_id: str, item: Received) -> bool:
    """Keep a received message unless this phone posted it before; True when new."""
    key = dedupe_key(device_id, item)
    if await repository.exists_unit(conn, user_id, key):
        return False
    now = clock.now()
    pk = await repository.add_unit(
        conn,
        {
            "ext_id": ids.random_token(ID_LENGTH), "user_id": user_id, "device_id": device_id,
            "dedupe_key": key, "type": item.type, "message_id": item.message_id,
            "sender": item.sender, "recipient": item.recipient, "sim_number": item.sim_number,
            "text": item.text, "data": item.data, "subject": item.subject,
            "transaction_id": item.transaction_id, "content_class": item.content_class,
            "size": item.size, "payload": item.payload,
            "received_at": received_moment(item) or now, "created_at": now,
        },
    )  # fmt: skip
    await repository.add_parts_unit(conn, [
        {"inbox_pk": pk, "part_id": a.part_id, "content_type": a.content_type, "name": a.name,
         "size": a.size, "data": a.data}
        for a in item.attachments
    ])  # fmt: skip
    return True


async def list_inbox(
    db: Database,
    user_id: int,
    wanted: InboxFilter,
    limit: int,
    offset: int,
    with_parts: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """One page, newest first; `with_parts` adds `parts` (metadata) to downloaded MMS."""
    async with db.read() as conn:
        rows, total = await repository.page(conn, user_id, wanted, limit, offset)
        if with_parts:
            mms = [row["id"] for row in rows if row["type"] == "MMS_DOWNLOADED"]
            found = await repository.parts_of(conn, mms) if mms else {}
            for row in rows:
                row["parts"] = found.get(row["id"], [])
    return rows, total


async def attachment(
    db: Database, user_id: int, ext_id: str, part_id: int
) -> tuple[str, str | None, bytes]:
    """(content type, name, bytes) of a part of the owner's MMS; NotFound if not theirs,
    absent, or sent without its bytes."""
    async with db.read() as conn:
        found = await repository.part_data(conn, user_id, ext_id, part_id)
    if found is None:
        raise NotFound("attachment not found")
    return found


async def prune(db: Database, retention_days: int) -> int:
    """Delete the messages received more than `retention_days` ago, with their
    attachments, in small batches; how many went."""
    before = clock.now() - timedelta(days=retention_days)
    return await delete_older(db, repository.inbox.c.received_at, before)
