"""Queries on the inbox, its MMS parts and its exports. Every query is scoped to its owner."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.base import table_of
from smsgw.db.engine import ColumnReader, ColumnWriter, RowInsert, UnitConnection, marks
from smsgw.inbox.models import InboxAttachment, InboxExport, InboxMessage

inbox = table_of(InboxMessage)
parts = table_of(InboxAttachment)
exports = table_of(InboxExport)
OPEN, DONE, EXPIRED, FAILED = "open", "done", "expired", "failed"


@dataclass(frozen=True)
class InboxFilter:
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    device_id: str | None = None


_EXISTS = f"SELECT 1 FROM {inbox.name} WHERE user_id = ? AND dedupe_key = ?"  # noqa: S608
_inbox_insert = RowInsert(inbox)
_parts_insert = RowInsert(parts)


async def exists_unit(conn: UnitConnection, user_id: int, dedupe_key: str) -> bool:
    return (await conn.execute(_EXISTS, (user_id, dedupe_key))).fetchone() is not None


async def add_unit(conn: UnitConnection, values: dict[str, Any]) -> int:
    return await _inbox_insert.one(conn, values)


async def add_parts_unit(conn: UnitConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await _parts_insert.many(conn, rows)


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


async def parts_of(
    conn: AsyncConnection, inbox_pks: Sequence[int]
) -> dict[int, list[dict[str, Any]]]:
    """The MMS parts of these inbox rows by row, in part order (metadata, never the bytes)."""
    columns = [parts.c.inbox_pk, parts.c.part_id, parts.c.content_type, parts.c.name,
               parts.c.size, parts.c.data.is_not(None).label("has_data")]  # fmt: skip
    query = select(*columns).where(parts.c.inbox_pk.in_(inbox_pks)).order_by(parts.c.id)
    found: dict[int, list[dict[str, Any]]] = {}
    for row in await conn.execute(query):
        found.setdefault(row.inbox_pk, []).append(row._asdict())
    return found


async def part_data(
    conn: AsyncConnection, user_id: int, ext_id: str, part_id: int
) -> tuple[str, str | None, bytes] | None:
    """(content type, name, bytes) of one part of the owner's message; None if no bytes."""
    query = (
        select(parts.c.content_type, parts.c.name, parts.c.data)
        .join(inbox, inbox.c.id == parts.c.inbox_pk)
        .where(inbox.c.user_id == user_id, inbox.c.ext_id == ext_id, parts.c.part_id == part_id)
    )
    row = (await conn.execute(query)).first()
    return None if row is None or row.data is None else (row.content_type, row.name, row.data)


async def in_range(
    conn: AsyncConnection,
    export: dict[str, Any],
    kinds: Sequence[str],
    limit: int,
    after: tuple[datetime, int] | None = None,
    before: datetime | None = None,
) -> list[dict[str, Any]]:
    """One page of the inbox rows of an export's phone and range, of these kinds, oldest
    first: at most `limit`, following the row `after` (its received_at, id) when given, and
    stored before `before` when given."""
    query = select(inbox).where(
        inbox.c.user_id == export["user_id"],
        inbox.c.device_id == export["device_id"],
        inbox.c.received_at >= export["since"],
        inbox.c.received_at <= export["until"],
        inbox.c.type.in_(kinds),
    )
    if after is not None:
        query = query.where(
            or_(
                inbox.c.received_at > after[0],
                and_(inbox.c.received_at == after[0], inbox.c.id > after[1]),
            )
        )
    if before is not None:
        query = query.where(inbox.c.created_at < before)
    query = query.order_by(inbox.c.received_at, inbox.c.id).limit(limit)
    return [row._asdict() for row in await conn.execute(query)]


async def add_exports(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(exports), rows)


async def unrequested(conn: AsyncConnection, device_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Open exports of these phones not yet sent to them, oldest first."""
    query = (
        select(exports)
        .where(
            exports.c.device_id.in_(device_ids),
            exports.c.state == OPEN,
            exports.c.requested_at.is_(None),
        )
        .order_by(exports.c.id)
    )
    return [row._asdict() for row in await conn.execute(query)]


async def mark_requested(conn: AsyncConnection, export_ids: Sequence[int], now: datetime) -> None:
    """The phones were sent these exports: their quiet time starts now."""
    query = (
        update(exports)
        .where(exports.c.id.in_(export_ids), exports.c.requested_at.is_(None))
        .values(requested_at=now, last_activity_at=now)
    )
    await conn.execute(query)


_OPEN_EXPORTS = (
    f"SELECT id, since, until, types FROM {exports.name}"  # noqa: S608
    " WHERE device_id = ? AND state = ? AND user_id = ? AND requested_at IS NOT NULL"
)
_read_at = ColumnReader(exports.c.since)
_at = ColumnWriter(exports.c.last_activity_at)


@dataclass(frozen=True)
class OpenExport:
    id: int
    since: datetime
    until: datetime
    types: str


async def open_exports_of_unit(
    conn: UnitConnection, user_id: int, device_id: str
) -> list[OpenExport]:
    """(id, since, until, types) of the phone's exports being replayed now."""
    read = _read_at.of(conn.dialect)
    rows = await conn.execute(_OPEN_EXPORTS, (device_id, OPEN, user_id))
    return [OpenExport(pk, read(since), read(until), types) for pk, since, until, types in rows]


async def touch_unit(conn: UnitConnection, export_ids: Sequence[int], now: datetime) -> None:
    sql = f"UPDATE {exports.name} SET last_activity_at = ? WHERE id IN ({marks(len(export_ids))})"  # noqa: S608
    await conn.execute(sql, (_at(conn, now), *export_ids))


def _unrequested_before(created_before: datetime) -> ColumnElement[bool]:
    return and_(
        exports.c.state == OPEN,
        exports.c.requested_at.is_(None),
        exports.c.created_at < created_before,
    )


async def expirable(conn: AsyncConnection, created_before: datetime) -> bool:
    """Whether `expire` would give up any export."""
    query = select(exports.c.id).where(_unrequested_before(created_before)).limit(1)
    return (await conn.execute(query)).first() is not None


async def expire(conn: AsyncConnection, created_before: datetime) -> int:
    """Give up open exports no phone picked up since `created_before`."""
    query = update(exports).where(_unrequested_before(created_before)).values(state=EXPIRED)
    return int((await conn.execute(query)).rowcount)


async def settled(conn: AsyncConnection, quiet_since: datetime, limit: int) -> list[dict[str, Any]]:
    """Open, requested exports with no activity since `quiet_since`."""
    query = (
        select(exports)
        .where(
            exports.c.state == OPEN,
            exports.c.requested_at.is_not(None),
            exports.c.last_activity_at <= quiet_since,
        )
        .order_by(exports.c.last_activity_at, exports.c.id)
        .limit(limit)
    )
    return [row._asdict() for row in await conn.execute(query)]


async def close(conn: AsyncConnection, export: dict[str, Any]) -> bool:
    """Close an export unless it moved since it was read (a conditional UPDATE: one winner)."""
    query = (
        update(exports)
        .where(
            exports.c.id == export["id"],
            exports.c.state == OPEN,
            exports.c.last_activity_at == export["last_activity_at"],
        )
        .values(state=DONE)
    )
    return bool((await conn.execute(query)).rowcount)


async def give_up(conn: AsyncConnection, export_id: int) -> bool:
    """An open export whose closing keeps failing: failed, no events (one winner)."""
    query = (
        update(exports).where(exports.c.id == export_id, exports.c.state == OPEN)
        .values(state=FAILED)
    )  # fmt: skip
    return bool((await conn.execute(query)).rowcount)
