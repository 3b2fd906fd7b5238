"""Queries on phone_health. Reads are scoped to the owner through `devices`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.base import table_of
from smsgw.db.engine import ColumnWriter, UnitConnection, marks
from smsgw.devices.models import Device
from smsgw.phonehealth.models import PhoneHealth

health = table_of(PhoneHealth)
devices = table_of(Device)


@dataclass(frozen=True)
class HealthRecord:
    """A phone's latest health (see PhoneHealth for each value's meaning)."""

    reported_at: datetime
    status: str | None = None
    battery_level: int | None = None
    battery_charging: int | None = None
    connection_status: int | None = None
    transport: int | None = None
    cellular: int | None = None
    failed_last_hour: int | None = None


_FIELDS = tuple(HealthRecord.__dataclass_fields__)
_STORE = (
    f"INSERT INTO {health.name} (device_id, {', '.join(_FIELDS)})"  # noqa: S608
    f" VALUES ({marks(len(_FIELDS) + 1)}) ON CONFLICT (device_id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _FIELDS)
)
_reported = ColumnWriter(health.c.reported_at)


async def store_unit(conn: UnitConnection, device_id: str, record: HealthRecord) -> None:
    """`store` in a unit of work."""
    values = [getattr(record, name) for name in _FIELDS]
    values[_FIELDS.index("reported_at")] = _reported(conn, record.reported_at)
    await conn.execute(_STORE, (device_id, *values))


async def of_user(conn: AsyncConnection, user_id: int) -> dict[str, HealthRecord]:
    """The latest health of each of the owner's phones that reported one, by phone id."""
    fields = [health.c[name] for name in HealthRecord.__dataclass_fields__]
    query = (
        select(health.c.device_id, *fields)
        .join(devices, devices.c.id == health.c.device_id)
        .where(devices.c.user_id == user_id)
    )
    return {row[0]: HealthRecord(*row[1:]) for row in await conn.execute(query)}
