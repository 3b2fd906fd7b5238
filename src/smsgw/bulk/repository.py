"""Queries on batches and their rows. Every query a user drives is scoped to its owner
(`find`, `recent`, `confirm`, `discard`); the sender's (`take_stale`, `waiting`, `record`,
`finish`) are the server's own work on a batch it holds the lease of."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.bulk.models import Batch, BatchItem
from smsgw.db.base import table_of
from smsgw.messages.models import Message

batches = table_of(Batch)
items = table_of(BatchItem)
messages = table_of(Message)
PREVIEW, SENDING, DONE = "preview", "sending", "done"
INVALID, WAITING, ACCEPTED, REFUSED = "invalid", "waiting", "accepted", "refused"


@dataclass(frozen=True)
class BatchRecord:
    id: str
    user_id: int
    state: str
    file_name: str
    template: str
    device_id: str | None
    sim_number: int | None
    priority: int
    with_delivery_report: bool
    total: int
    invalid: int
    blank: int
    parts: int
    accepted: int
    failed: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    lease_until: datetime | None


@dataclass(frozen=True)
class ItemRecord:
    position: int
    row: int
    phone: str
    text: str | None
    parts: int
    message_id: str | None
    state: str
    error: str | None


_BATCH = [batches.c[name] for name in BatchRecord.__dataclass_fields__]
_ITEM = [items.c[name] for name in ItemRecord.__dataclass_fields__]


async def create(conn: AsyncConnection, values: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(batches).values(**values))
    if rows:
        await conn.execute(insert(items), [{"batch_id": values["id"], **row} for row in rows])


async def find(conn: AsyncConnection, user_id: int, batch_id: str) -> BatchRecord | None:
    query = select(*_BATCH).where(batches.c.id == batch_id, batches.c.user_id == user_id)
    row = (await conn.execute(query)).first()
    return None if row is None else BatchRecord(*row)


async def recent(conn: AsyncConnection, user_id: int, limit: int) -> list[BatchRecord]:
    """The owner's newest batches, newest first."""
    query = select(*_BATCH).where(batches.c.user_id == user_id)
    query = query.order_by(batches.c.created_at.desc(), batches.c.id.desc()).limit(limit)
    return [BatchRecord(*row) for row in await conn.execute(query)]


async def rows_of(
    conn: AsyncConnection, batch_id: str, states: tuple[str, ...], limit: int
) -> list[ItemRecord]:
    """The batch's first `limit` rows in these states, in file order."""
    query = select(*_ITEM).where(items.c.batch_id == batch_id, items.c.state.in_(states))
    return [
        ItemRecord(*row)
        for row in await conn.execute(query.order_by(items.c.position).limit(limit))
    ]


async def confirm(
    conn: AsyncConnection, user_id: int, batch_id: str, now: datetime, lease_until: datetime
) -> bool:
    """Start sending the owner's batch if it is a preview not expired; True when this call
    did (a conditional UPDATE: of two confirmations, one wins)."""
    query = update(batches).where(
        batches.c.id == batch_id,
        batches.c.user_id == user_id,
        batches.c.state == PREVIEW,
        batches.c.expires_at > now,
    )
    values = {"state": SENDING, "expires_at": None, "lease_until": lease_until, "updated_at": now}
    return bool((await conn.execute(query.values(**values))).rowcount)


async def discard(conn: AsyncConnection, user_id: int, batch_id: str) -> bool:
    """Delete the owner's batch if it is a preview (never one that is sending or sent)."""
    query = delete(batches).where(
        batches.c.id == batch_id, batches.c.user_id == user_id, batches.c.state == PREVIEW
    )
    return bool((await conn.execute(query)).rowcount)


async def take(conn: AsyncConnection, batch_id: str, now: datetime, until: datetime) -> bool:
    """Take the lease on a sending batch whose lease ran out; True when taken (a
    conditional UPDATE: of two processes, one wins)."""
    query = update(batches).where(
        batches.c.id == batch_id, batches.c.state == SENDING, batches.c.lease_until < now
    )
    return bool((await conn.execute(query.values(lease_until=until))).rowcount)


async def stale(conn: AsyncConnection, now: datetime) -> list[str]:
    """The sending batches whose sender's lease ran out (a stopped or crashed process)."""
    query = select(batches.c.id).where(batches.c.state == SENDING, batches.c.lease_until < now)
    return [row[0] for row in await conn.execute(query.order_by(batches.c.created_at))]


async def renew(conn: AsyncConnection, batch_id: str, until: datetime) -> None:
    await conn.execute(update(batches).where(batches.c.id == batch_id).values(lease_until=until))


async def owner_of(conn: AsyncConnection, batch_id: str) -> BatchRecord | None:
    row = (await conn.execute(select(*_BATCH).where(batches.c.id == batch_id))).first()
    return None if row is None else BatchRecord(*row)


async def record(
    conn: AsyncConnection, batch_id: str, outcomes: list[tuple[int, str, str | None]],
    now: datetime,
) -> None:  # fmt: skip
    """Each row's outcome (position, state, error), if it is still waiting; the batch's
    counts then follow its rows (so a row recorded twice is counted once)."""
    query = update(items).where(
        items.c.batch_id == batch_id,
        items.c.position == bindparam("at"),
        items.c.state == WAITING,
    )
    outcome = query.values(state=bindparam("new_state"), error=bindparam("why"))
    rows = [{"at": at, "new_state": state, "why": why} for at, state, why in outcomes]
    await conn.execute(outcome, rows)
    done = (ACCEPTED, REFUSED)
    tally = (
        select(items.c.state, func.count())
        .where(items.c.batch_id == batch_id, items.c.state.in_(done))
        .group_by(items.c.state)
    )
    counts: dict[str, int] = {state: int(n) for state, n in await conn.execute(tally)}
    values = {"accepted": counts.get(ACCEPTED, 0), "failed": counts.get(REFUSED, 0)}
    await conn.execute(
        update(batches).where(batches.c.id == batch_id).values(**values, updated_at=now)
    )


async def finish(conn: AsyncConnection, batch_id: str, now: datetime) -> None:
    query = update(batches).where(batches.c.id == batch_id, batches.c.state == SENDING)
    await conn.execute(query.values(state=DONE, lease_until=None, updated_at=now))


async def message_states(conn: AsyncConnection, user_id: int, batch_id: str) -> dict[str, int]:
    """How many of the batch's queued messages are in each state now (a message deleted
    since, by retention, is not counted)."""
    joined = items.join(
        messages, and_(messages.c.user_id == user_id, messages.c.ext_id == items.c.message_id)
    )
    query = (
        select(messages.c.state, func.count())
        .select_from(joined)
        .where(items.c.batch_id == batch_id, items.c.state == ACCEPTED)
        .group_by(messages.c.state)
    )
    return {state: int(count) for state, count in await conn.execute(query)}
