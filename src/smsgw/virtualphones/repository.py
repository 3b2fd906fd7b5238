"""Queries on virtual phones: their settings, the lease on driving them, their due messages.

Every query a user drives is scoped to its owner; the driver's (`lease`, `processed`) are
the server's own work over every virtual phone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.base import table_of
from smsgw.devices.models import Device
from smsgw.domain.states import ProcessingState
from smsgw.messages.models import Message, MessageStateEntry, Recipient
from smsgw.virtualphones.models import VirtualPhone

virtual_phones = table_of(VirtualPhone)
devices = table_of(Device)
messages = table_of(Message)
recipients = table_of(Recipient)
history = table_of(MessageStateEntry)
PROCESSED = ProcessingState.PROCESSED.value
#: Messages of one phone looked at per round (the rest the next round).
BATCH = 100


@dataclass(frozen=True)
class VirtualRecord:
    """A virtual phone: its id, owner, delay and script, and how far along the script."""

    device_id: str
    user_id: int
    delay_ms: int
    script: str
    step: int

    @property
    def delay_seconds(self) -> float:
        return self.delay_ms / 1000


@dataclass(frozen=True)
class Lease:
    """A virtual phone and who drives it until when (None: nobody)."""

    phone: VirtualRecord
    driver: str | None
    lease_until: datetime | None


@dataclass(frozen=True)
class Processed:
    """A message a virtual phone took (Processed), with when and its recipients' numbers."""

    ext_id: str
    processed_at: datetime
    with_delivery_report: bool
    valid_until: datetime | None
    numbers: list[str]


_COLUMNS = (
    virtual_phones.c.device_id,
    devices.c.user_id,
    virtual_phones.c.delay_ms,
    virtual_phones.c.script,
    virtual_phones.c.step,
)
_JOINED = virtual_phones.join(devices, devices.c.id == virtual_phones.c.device_id)


async def add(conn: AsyncConnection, device_id: str, delay_seconds: float, script: str) -> None:
    delay_ms = round(delay_seconds * 1000)
    values = {"device_id": device_id, "delay_ms": delay_ms, "script": script, "step": 0}
    await conn.execute(insert(virtual_phones).values(values))


async def of_user(conn: AsyncConnection, user_id: int) -> list[VirtualRecord]:
    query = select(*_COLUMNS).select_from(_JOINED).where(devices.c.user_id == user_id)
    return [VirtualRecord(*row) for row in await conn.execute(query)]


async def leases(conn: AsyncConnection) -> list[Lease]:
    """Every virtual phone with its lease."""
    query = select(*_COLUMNS, virtual_phones.c.driver, virtual_phones.c.lease_until)
    rows = await conn.execute(query.select_from(_JOINED).order_by(devices.c.id))
    return [Lease(VirtualRecord(*row[:5]), row[5], row[6]) for row in rows]


async def lease(
    conn: AsyncConnection, driver: str, now: datetime, until: datetime
) -> list[VirtualRecord]:
    """Take or renew the lease on every virtual phone no other driver holds (or whose
    driver's lease ran out); the phones `driver` holds now. A conditional UPDATE: of two
    drivers, the row count says which won."""
    free = or_(
        virtual_phones.c.driver.is_(None),
        virtual_phones.c.driver == driver,
        virtual_phones.c.lease_until < now,
    )
    await conn.execute(update(virtual_phones).where(free).values(driver=driver, lease_until=until))
    query = select(*_COLUMNS).select_from(_JOINED).where(virtual_phones.c.driver == driver)
    return [VirtualRecord(*row) for row in await conn.execute(query.order_by(devices.c.id))]


async def release(conn: AsyncConnection, driver: str) -> None:
    """Give up `driver`'s leases (it stops): another driver takes the phones at once."""
    query = update(virtual_phones).where(virtual_phones.c.driver == driver)
    await conn.execute(query.values(driver=None, lease_until=None))


async def advance(conn: AsyncConnection, device_id: str, steps: int) -> None:
    """Move the phone `steps` outcomes along its script."""
    query = update(virtual_phones).where(virtual_phones.c.device_id == device_id)
    await conn.execute(query.values(step=virtual_phones.c.step + steps))


async def processed(conn: AsyncConnection, device_id: str) -> list[Processed]:
    """The phone's messages in Processed (taken, not yet sent), oldest taken first."""
    entry = and_(history.c.message_id == messages.c.id, history.c.state == PROCESSED)
    query = (
        select(
            messages.c.id,
            messages.c.ext_id,
            history.c.at,
            messages.c.with_delivery_report,
            messages.c.valid_until,
        )
        .select_from(messages.join(history, entry))
        .where(messages.c.device_id == device_id, messages.c.state == PROCESSED)
        .order_by(history.c.at, messages.c.id)
        .limit(BATCH)
    )
    rows = list(await conn.execute(query))
    numbers: dict[int, list[str]] = {row[0]: [] for row in rows}
    if numbers:
        query_numbers = (
            select(recipients.c.message_id, recipients.c.phone_number)
            .where(recipients.c.message_id.in_(list(numbers)))
            .order_by(recipients.c.message_id, recipients.c.position)
        )
        for key, number in await conn.execute(query_numbers):
            numbers[key].append(number)
    return [
        Processed(ext_id, at, bool(report), valid_until, numbers[pk])
        for pk, ext_id, at, report, valid_until in rows
    ]


async def holds_work(conn: AsyncConnection, device_id: str, user_id: int, now: datetime) -> bool:
    """Whether a pull of this phone would hand it something it holds: a message to send
    (Pending, due) or to drop (Cancelling, or taken back from it). What `routing.pull` hands
    out besides new claims (routing/repository.py: `held`, `released_from`)."""
    mine = and_(
        messages.c.device_id == device_id,
        messages.c.state.in_([ProcessingState.PENDING.value, ProcessingState.CANCELLING.value]),
        or_(
            messages.c.claimed_at.is_not(None),
            messages.c.schedule_at.is_(None),
            messages.c.schedule_at <= now,
        ),
    )
    dropped = and_(
        messages.c.released_from == device_id,
        messages.c.user_id == user_id,
        or_(messages.c.device_id.is_(None), messages.c.device_id != device_id),
    )
    query = select(messages.c.id).where(or_(mine, dropped)).limit(1)
    return (await conn.execute(query)).first() is not None


async def delete_messages(conn: AsyncConnection, device_id: str) -> None:
    """Delete the messages a virtual phone holds or 'sent' (with their recipients and
    history): once the phone is gone they would count as sent by no phone, a real phone's."""
    await conn.execute(delete(messages).where(messages.c.device_id == device_id))
