"""Queries of the event log (no rules here: those are in service.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.base import table_of
from smsgw.logs.models import LogEntry
from smsgw.messages.models import Message

entries = table_of(LogEntry)
messages = table_of(Message)


@dataclass(frozen=True)
class EntryRecord:
    id: int
    created_at: datetime
    module: str
    priority: str
    message: str
    context: dict[str, Any] | None


async def add(conn: AsyncConnection, rows: Iterable[Mapping[str, Any]]) -> None:
    batch = list(rows)
    if batch:
        await conn.execute(insert(entries), batch)


async def owners_of(conn: AsyncConnection, keys: list[int]) -> list[tuple[int, str]]:
    """(owner, external id) of the messages with these keys."""
    if not keys:
        return []
    query = select(messages.c.user_id, messages.c.ext_id).where(messages.c.id.in_(keys))
    return [(row[0], row[1]) for row in await conn.execute(query)]


async def between(
    conn: AsyncConnection,
    user_id: int,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[EntryRecord]:
    """The owner's entries with since <= created_at < until, oldest first."""
    query = select(entries).where(entries.c.user_id == user_id)
    if since is not None:
        query = query.where(entries.c.created_at >= since)
    if until is not None:
        query = query.where(entries.c.created_at < until)
    query = query.order_by(entries.c.created_at, entries.c.id).limit(limit)
    return [
        EntryRecord(r.id, r.created_at, r.module, r.priority, r.message, r.context)
        for r in await conn.execute(query)
    ]
