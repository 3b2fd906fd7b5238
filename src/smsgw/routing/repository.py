"""Queries that move messages between the queue and phones. Claims are conditional UPDATEs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.domain.states import ProcessingState
from smsgw.messages import repository as stored
from smsgw.messages.repository import MessageRecord

messages = stored.messages
recipients = stored.recipients
history = stored.history
devices = stored.devices

PENDING = ProcessingState.PENDING.value
CANCELLING = ProcessingState.CANCELLING.value
ACTIVE = (PENDING, CANCELLING)
PULL_LIMIT = 100


@dataclass(frozen=True)
class Phone:
    """The puller: its id, its owner, and its SIM slots (None when unknown)."""

    device_id: str
    user_id: int
    sim_numbers: frozenset[int] | None


def _order(newest_first: bool) -> tuple[ColumnElement[object], ...]:
    created = messages.c.created_at.desc() if newest_first else messages.c.created_at.asc()
    tie = messages.c.id.desc() if newest_first else messages.c.id.asc()
    return (messages.c.schedule_at.asc().nulls_first(), messages.c.priority.desc(), created, tie)


async def _records(
    conn: AsyncConnection, where: ColumnElement[bool], newest_first: bool
) -> list[MessageRecord]:
    query = select(*stored.COLUMNS).where(where).order_by(*_order(newest_first)).limit(PULL_LIMIT)
    records = [MessageRecord(**row._asdict()) for row in await conn.execute(query)]
    await stored.attach_details(conn, records)
    return records


async def held(
    conn: AsyncConnection, phone: Phone, newest_first: bool, now: datetime
) -> list[MessageRecord]:
    """Messages this phone has (pinned or claimed) that it has not reported on yet.

    A pinned message scheduled for later stays on the server until its time (so cancelling it
    before then is immediate), unless the phone already has it.
    """
    where = and_(
        messages.c.device_id == phone.device_id,
        messages.c.state.in_(ACTIVE),
        or_(
            messages.c.claimed_at.is_not(None),
            messages.c.schedule_at.is_(None),
            messages.c.schedule_at <= now,
        ),
    )
    return await _records(conn, where, newest_first)


async def released_from(conn: AsyncConnection, phone: Phone) -> list[MessageRecord]:
    """Messages taken back from this phone that it must drop, until it answers about them."""
    where = and_(
        messages.c.released_from == phone.device_id,
        messages.c.user_id == phone.user_id,
        or_(messages.c.device_id.is_(None), messages.c.device_id != phone.device_id),
    )
    return await _records(conn, where, newest_first=True)


def _claimable(phone: Phone, now: datetime) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = [
        messages.c.user_id == phone.user_id,
        messages.c.device_id.is_(None),
        messages.c.state == PENDING,
        or_(messages.c.valid_until.is_(None), messages.c.valid_until > now),
        or_(messages.c.schedule_at.is_(None), messages.c.schedule_at <= now),
        or_(messages.c.released_from.is_(None), messages.c.released_from != phone.device_id),
    ]
    if phone.sim_numbers is not None:
        conditions.append(
            or_(messages.c.sim_number.is_(None), messages.c.sim_number.in_(phone.sim_numbers))
        )
    return and_(*conditions)


async def claim(
    conn: AsyncConnection, phone: Phone, count: int, now: datetime, newest_first: bool
) -> list[int]:
    """Claim up to `count` queued messages for this phone; returns the keys it won."""
    candidates = select(messages.c.id).where(_claimable(phone, now))
    keys = [
        row[0]
        for row in await conn.execute(candidates.order_by(*_order(newest_first)).limit(count))
    ]
    if not keys:
        return []
    won = await conn.execute(
        update(messages)
        .where(messages.c.id.in_(keys), messages.c.device_id.is_(None), messages.c.state == PENDING)
        .values(device_id=phone.device_id, claimed_at=now, updated_at=now)
        .returning(messages.c.id)
    )
    return [row[0] for row in won]


async def mark_taken(conn: AsyncConnection, keys: list[int], now: datetime) -> None:
    """Record the first pull of pinned messages (a cancel then needs the phone's answer)."""
    if keys:
        query = update(messages).where(messages.c.id.in_(keys), messages.c.claimed_at.is_(None))
        await conn.execute(query.values(claimed_at=now))


async def has_claimable(conn: AsyncConnection, phone: Phone, now: datetime) -> bool:
    query = select(messages.c.id).where(_claimable(phone, now)).limit(1)
    return (await conn.execute(query)).first() is not None


async def owners_with_claimable(conn: AsyncConnection, now: datetime) -> list[tuple[int, int]]:
    """(owner, count) of queued messages that are due and unexpired (to wake their phones)."""
    query = (
        select(messages.c.user_id, func.count())
        .where(
            messages.c.device_id.is_(None),
            messages.c.state == PENDING,
            or_(messages.c.valid_until.is_(None), messages.c.valid_until > now),
            or_(messages.c.schedule_at.is_(None), messages.c.schedule_at <= now),
        )
        .group_by(messages.c.user_id)
    )
    return [(row[0], row[1]) for row in await conn.execute(query)]


async def phones_with_due_pinned(conn: AsyncConnection, now: datetime) -> list[tuple[int, str]]:
    """(owner, phone) of pinned messages that are due and the phone has not taken yet."""
    query = (
        select(messages.c.user_id, messages.c.device_id)
        .where(
            messages.c.device_id.is_not(None),
            messages.c.claimed_at.is_(None),
            messages.c.state == PENDING,
            or_(messages.c.schedule_at.is_(None), messages.c.schedule_at <= now),
        )
        .distinct()
    )
    return [(row[0], row[1]) for row in await conn.execute(query)]


async def stale_claims(
    conn: AsyncConnection, claimed_before: datetime
) -> list[tuple[int, str, datetime, datetime]]:
    """(key, device, claimed_at, device's stored last_seen) of unpinned, unreported claims
    made before the cutoff."""
    query = (
        select(messages.c.id, messages.c.device_id, messages.c.claimed_at, devices.c.last_seen)
        .join(devices, devices.c.id == messages.c.device_id)
        .where(
            messages.c.state == PENDING,
            messages.c.pinned.is_(False),
            messages.c.claimed_at < claimed_before,
        )
    )
    return [(row[0], row[1], row[2], row[3]) for row in await conn.execute(query)]


async def release(conn: AsyncConnection, key: int, device_id: str, claimed_at: datetime) -> bool:
    """Put a claim back in the queue, unless the phone reported meanwhile."""
    query = update(messages).where(
        messages.c.id == key,
        messages.c.device_id == device_id,
        messages.c.claimed_at == claimed_at,
        messages.c.state == PENDING,
    )
    values = {"device_id": None, "claimed_at": None, "released_from": device_id}
    return (await conn.execute(query.values(values))).rowcount > 0


async def fail(conn: AsyncConnection, keys: list[int], error: str, now: datetime) -> None:
    """Fail messages and all their recipients with `error`."""
    if not keys:
        return
    failed = ProcessingState.FAILED.value
    await conn.execute(
        update(messages).where(messages.c.id.in_(keys)).values(state=failed, updated_at=now)
    )
    await conn.execute(
        update(recipients)
        .where(recipients.c.message_id.in_(keys))
        .values(state=failed, error=error)
    )
    await conn.execute(
        insert(history), [{"message_id": k, "state": failed, "at": now} for k in keys]
    )


async def expired_unclaimed(conn: AsyncConnection, now: datetime) -> list[int]:
    query = select(messages.c.id).where(
        messages.c.state == PENDING,
        messages.c.claimed_at.is_(None),
        messages.c.valid_until <= now,
    )
    return [row[0] for row in await conn.execute(query)]


async def detach_device(conn: AsyncConnection, device_id: str, now: datetime) -> list[int]:
    """Before a phone is deleted: queue its unpinned messages again, fail its pinned ones.

    Returns the keys of the pinned messages that failed. Cancelling messages are cancelled,
    since no phone is left to confirm them.
    """
    mine = messages.c.device_id == device_id
    cancelled = ProcessingState.CANCELLED.value
    cancelling = select(messages.c.id).where(mine, messages.c.state == CANCELLING)
    cancel_keys = [row[0] for row in await conn.execute(cancelling)]
    if cancel_keys:
        await conn.execute(
            update(messages)
            .where(messages.c.id.in_(cancel_keys))
            .values(state=cancelled, updated_at=now)
        )
        await conn.execute(
            update(recipients)
            .where(recipients.c.message_id.in_(cancel_keys))
            .values(state=cancelled)
        )
        await conn.execute(
            insert(history), [{"message_id": k, "state": cancelled, "at": now} for k in cancel_keys]
        )
    await conn.execute(
        update(messages)
        .where(mine, messages.c.state == PENDING, messages.c.pinned.is_(False))
        .values(device_id=None, claimed_at=None, updated_at=now)
    )
    pinned = select(messages.c.id).where(
        mine, messages.c.state == PENDING, messages.c.pinned.is_(True)
    )
    return [row[0] for row in await conn.execute(pinned)]


async def in_flight(conn: AsyncConnection, device_id: str) -> int:
    """How many messages this phone holds without having reported on them."""
    query = select(func.count()).where(
        messages.c.device_id == device_id, messages.c.state == PENDING
    )
    return int((await conn.execute(query)).scalar_one())


@dataclass(frozen=True)
class StoredRecipient:
    id: int
    phone_number: str
    state: str
    error: str | None


async def reported_message(
    conn: AsyncConnection, phone: Phone, ext_id: str
) -> tuple[int, str] | None:
    """(key, state) of the owner's message `ext_id`, only if this phone holds it."""
    query = select(messages.c.id, messages.c.state).where(
        messages.c.user_id == phone.user_id,
        messages.c.ext_id == ext_id,
        messages.c.device_id == phone.device_id,
    )
    row = (await conn.execute(query)).first()
    return None if row is None else (row[0], row[1])


async def acknowledge_release(conn: AsyncConnection, phone: Phone, ext_id: str) -> None:
    """The phone answered about a message taken back from it: stop listing it as Cancelling."""
    query = update(messages).where(
        messages.c.user_id == phone.user_id,
        messages.c.ext_id == ext_id,
        messages.c.released_from == phone.device_id,
    )
    await conn.execute(query.values(released_from=None))


async def recipients_of(conn: AsyncConnection, key: int) -> list[StoredRecipient]:
    query = (
        select(recipients.c.id, recipients.c.phone_number, recipients.c.state, recipients.c.error)
        .where(recipients.c.message_id == key)
        .order_by(recipients.c.position)
    )
    return [StoredRecipient(*row) for row in await conn.execute(query)]


async def set_recipient(
    conn: AsyncConnection, recipient_id: int, state: str, error: str | None
) -> None:
    query = update(recipients).where(recipients.c.id == recipient_id)
    await conn.execute(query.values(state=state, error=error))


async def set_message_state(conn: AsyncConnection, key: int, state: str, now: datetime) -> None:
    query = update(messages).where(messages.c.id == key)
    await conn.execute(query.values(state=state, updated_at=now))


async def add_history(conn: AsyncConnection, key: int, entries: dict[str, datetime]) -> None:
    """Record states not recorded yet: the first timestamp per state wins."""
    known = select(history.c.state).where(history.c.message_id == key)
    seen = {row[0] for row in await conn.execute(known)}
    rows = [
        {"message_id": key, "state": state, "at": at}
        for state, at in entries.items()
        if state not in seen
    ]
    if rows:
        await conn.execute(insert(history), rows)
