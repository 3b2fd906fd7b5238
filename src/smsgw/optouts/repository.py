"""Queries on opt-outs. Every query is scoped to its owner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.base import table_of
from smsgw.db.engine import ColumnWriter, Scalar, UnitConnection, marks, upsert
from smsgw.optouts.models import OptOut

opt_outs = table_of(OptOut)


@dataclass(frozen=True)
class OptOutRecord:
    phone_number: str
    source: str
    created_at: datetime


async def add(conn: AsyncConnection, user_id: int, number: str, source: str, now: datetime) -> bool:
    """List `number` for the owner unless it is listed already (its first entry stays);
    True when added."""
    values = {"user_id": user_id, "phone_number": number, "source": source, "created_at": now}
    query = upsert(conn, opt_outs).values(**values).on_conflict_do_nothing()
    return (await conn.execute(query.returning(opt_outs.c.id))).first() is not None


_ADD = (
    f"INSERT INTO {opt_outs.name} (user_id, phone_number, source, created_at)"  # noqa: S608
    " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, phone_number) DO NOTHING"
)
_REMOVE = f"DELETE FROM {opt_outs.name} WHERE user_id = ? AND phone_number = ?"  # noqa: S608
_created = ColumnWriter(opt_outs.c.created_at)


async def add_unit(
    conn: UnitConnection, user_id: int, number: str, source: str, now: datetime
) -> bool:
    """`add` in a unit of work."""
    values = (user_id, number, source, _created(conn, now))
    return (await conn.execute(_ADD, values)).rowcount > 0


async def remove_unit(conn: UnitConnection, user_id: int, number: str) -> bool:
    """`remove` in a unit of work."""
    return (await conn.execute(_REMOVE, (user_id, number))).rowcount > 0


async def remove(conn: AsyncConnection, user_id: int, number: str) -> bool:
    """Take `number` off the owner's list; True when it was listed."""
    query = delete(opt_outs).where(opt_outs.c.user_id == user_id, opt_outs.c.phone_number == number)
    return bool((await conn.execute(query)).rowcount)


async def find(conn: AsyncConnection, user_id: int, number: str) -> OptOutRecord | None:
    columns = (opt_outs.c.phone_number, opt_outs.c.source, opt_outs.c.created_at)
    query = select(*columns).where(opt_outs.c.user_id == user_id, opt_outs.c.phone_number == number)
    row = (await conn.execute(query)).first()
    return None if row is None else OptOutRecord(*row)


async def page(
    conn: AsyncConnection, user_id: int, limit: int, offset: int
) -> tuple[list[OptOutRecord], int]:
    """One page of the owner's list, newest first, and how many are listed: counted by the
    statement that reads the page (two statements would see different lists on PostgreSQL,
    where each has its own snapshot), or apart when the page is past the end."""
    mine = opt_outs.c.user_id == user_id
    columns = (opt_outs.c.phone_number, opt_outs.c.source, opt_outs.c.created_at)
    query = (
        select(*columns, func.count().over())
        .where(mine)
        .order_by(opt_outs.c.created_at.desc(), opt_outs.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    rows = (await conn.execute(query)).all()
    if rows:
        return [OptOutRecord(*row[:3]) for row in rows], int(rows[0][3])
    if offset == 0:
        return [], 0
    return [], int((await conn.execute(select(func.count()).where(mine))).scalar_one())


# The send path (units of work, plain statements): see messages/service.py.


def how_many_listed(user_id: int, numbers: list[str]) -> Scalar:
    """How many of `numbers` the owner's list holds (the unique key is the index)."""
    sql = (
        "SELECT count(*) FROM opt_outs"  # noqa: S608
        f" WHERE user_id = ? AND phone_number IN ({marks(len(numbers))})"
    )
    return Scalar(sql, [user_id, *numbers])


async def listed(conn: UnitConnection, user_id: int, numbers: list[str]) -> set[str]:
    """Which of `numbers` the owner's list holds."""
    query = (
        "SELECT phone_number FROM opt_outs"  # noqa: S608
        f" WHERE user_id = ? AND phone_number IN ({marks(len(numbers))})"
    )
    return {row[0] for row in await conn.execute(query, [user_id, *numbers])}
