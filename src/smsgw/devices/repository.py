"""Queries on the devices table. Every query that a user drives is scoped to its owner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.base import table_of
from smsgw.db.engine import ColumnReader, UnitConnection
from smsgw.devices.models import Device

devices = table_of(Device)


@dataclass(frozen=True)
class DeviceRecord:
    id: str
    user_id: int
    name: str | None
    push_token: str | None
    sim_cards: list[dict[str, Any]] | None
    app_version: str | None
    created_at: datetime
    updated_at: datetime
    last_seen: datetime
    #: A virtual phone (virtualphones/): it lives inside smsgw and sends no real SMS.
    virtual: bool = False
    #: Its own budget, SMS parts per minute and per day (None: the server's; 0: no limit).
    parts_per_minute: int | None = None
    parts_per_day: int | None = None


_COLUMNS = (
    devices.c.id,
    devices.c.user_id,
    devices.c.name,
    devices.c.push_token,
    devices.c.sim_cards,
    devices.c.app_version,
    devices.c.created_at,
    devices.c.updated_at,
    devices.c.last_seen,
    devices.c.virtual,
    devices.c.parts_per_minute,
    devices.c.parts_per_day,
)


async def add(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(devices).values(values))


_read_sim_cards = ColumnReader(devices.c.sim_cards)


async def auth_by_token_hash(
    conn: UnitConnection, token_hash: str
) -> tuple[str, int, list[dict[str, Any]] | None, str | None] | None:
    """(id, owner, SIM cards, app version) of the phone whose token has this hash, on a plain
    connection (`Database.read_unit`: every phone request makes this lookup)."""
    query = "SELECT id, user_id, sim_cards, app_version FROM devices WHERE token_hash = ?"
    row = (await conn.execute(query, (token_hash,))).fetchone()
    return None if row is None else (row[0], row[1], _read_sim_cards(conn, row[2]), row[3])


async def by_id(conn: AsyncConnection, device_id: str) -> DeviceRecord | None:
    row = (await conn.execute(select(*_COLUMNS).where(devices.c.id == device_id))).first()
    return None if row is None else DeviceRecord(**row._asdict())


async def of_user(conn: AsyncConnection, user_id: int) -> list[DeviceRecord]:
    query = select(*_COLUMNS).where(devices.c.user_id == user_id).order_by(devices.c.created_at)
    return [DeviceRecord(**row._asdict()) for row in await conn.execute(query)]


async def change(conn: AsyncConnection, device_id: str, values: dict[str, Any]) -> None:
    await conn.execute(update(devices).where(devices.c.id == device_id).values(values))


async def remove(conn: AsyncConnection, user_id: int, device_id: str) -> bool:
    query = delete(devices).where(devices.c.id == device_id, devices.c.user_id == user_id)
    return (await conn.execute(query)).rowcount > 0


async def save_last_seen(conn: AsyncConnection, seen: dict[str, datetime]) -> None:
    """Persist last-seen marks, never moving a stored time backwards."""
    for device_id, moment in seen.items():
        query = update(devices).where(devices.c.id == device_id, devices.c.last_seen < moment)
        await conn.execute(query.values(last_seen=moment))
