"""Queries on the inbox. Every query is scoped to its owner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.base import table_of
from smsgw.inbox.models import InboxMessage

inbox = table_of(InboxMessage)


@dataclass(frozen=True)
class InboxFilter:
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    device_id: str | None = None


async def exists(conn: AsyncConnection, user_id: int, dedupe_key: str) -> bool:
    query = select(inbox.c.id).where(inbox.c.user_id == user_id, inbox.c.dedupe_key == dedupe_key)
    return (await conn.execute(query)).first() is not None


async def add(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(inbox).values(**values))


def _where(user_id: int, wanted: InboxFilter) -> ColumnElement[bool]:
    conditions = [inbox.c.user_id == user_id]
    if wanted.type is not None:
        conditions.append(inbox.c.type == wanted.type)
    if wanted.since is not None:
        conditions.append(inbox.c.received_at >= wanted.since)
    if wanted.until is not None:
        conditions.append(inbox.c.received_at <= wanted.until)
    if wanted.device_id is not None:
        conditions.append(inbox.c.device_id == wanted.device_id)
    return and_(*conditions)


async def page(
    conn: AsyncConnection, user_id: int, wanted: InboxFilter, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page, newest first, and the total number of matches."""
    where = _where(user_id, wanted)
    total = (await conn.execute(select(func.count()).select_from(inbox).where(where))).scalar()
    query = (
        select(inbox)
        .where(where)
        .order_by(inbox.c.received_at.desc(), inbox.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [row._asdict() for row in await conn.execute(query)], int(total or 0)
