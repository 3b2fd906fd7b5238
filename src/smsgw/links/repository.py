"""Queries on links and their parts. Every query a user drives is scoped to its owner; the
link worker's (leases, parts, outcomes) are the server's own work on the links it runs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.accounts.models import User
from smsgw.db.base import table_of
from smsgw.devices.models import Device
from smsgw.domain.states import ProcessingState
from smsgw.links.models import Link, LinkPart
from smsgw.messages.models import Message

links = table_of(Link)
parts = table_of(LinkPart)
devices = table_of(Device)
users = table_of(User)
messages = table_of(Message)

ACCEPTED = "accepted"
REJECTED = "rejected"
UNKNOWN = "unknown"
DELIVERED = "delivered"
UNDELIVERED = "undelivered"
CANCELLED = "cancelled"
_UNSETTLED = (ProcessingState.PROCESSED.value, ProcessingState.SENT.value)


@dataclass(frozen=True)
class LinkRecord:
    """A link: its sender identity (`device_id`, owner), its settings and its last state."""

    device_id: str
    user_id: int
    name: str | None
    kind: str
    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    system_type: str
    source_addr: str
    source_ton: int
    source_npi: int
    throughput: int
    window: int
    data_coding: int
    bind_mode: str
    state: str
    detail: str | None
    state_at: datetime


@dataclass(frozen=True)
class PartJob:
    """A planned part to submit, with what its submit_sm needs from its message."""

    id: int
    message_id: int
    ext_id: str
    phone_number: str
    part: int
    parts: int
    text: str
    with_delivery_report: bool


_COLUMNS = (
    links.c.device_id, devices.c.user_id, devices.c.name, links.c.kind, links.c.host,
    links.c.port, links.c.system_id, links.c.password, links.c.system_type,
    links.c.source_addr, links.c.source_ton, links.c.source_npi, links.c.throughput,
    links.c.window, links.c.data_coding, links.c.bind_mode, links.c.state, links.c.detail,
    links.c.state_at,
)  # fmt: skip


def _record(row: Any) -> LinkRecord:
    return LinkRecord(*row)


_JOINED = links.join(devices, devices.c.id == links.c.device_id)


async def add(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(links).values(values))


async def of_user(conn: AsyncConnection, user_id: int) -> list[LinkRecord]:
    query = select(*_COLUMNS).select_from(_JOINED).where(devices.c.user_id == user_id)
    return [_record(row) for row in await conn.execute(query.order_by(devices.c.created_at))]


async def every(conn: AsyncConnection) -> list[tuple[str, LinkRecord]]:
    """Every link with its owner's login (the operator's listing)."""
    joined = _JOINED.join(users, users.c.id == devices.c.user_id)
    query = select(users.c.login, *_COLUMNS).select_from(joined)
    rows = await conn.execute(query.order_by(users.c.login, devices.c.created_at))
    return [(row[0], _record(row[1:])) for row in rows]


async def by_id(conn: AsyncConnection, device_id: str) -> LinkRecord | None:
    query = select(*_COLUMNS).select_from(_JOINED).where(links.c.device_id == device_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _record(row)


async def leases(conn: AsyncConnection) -> list[tuple[str, str | None, datetime | None]]:
    """(link, driver, lease_until) of every link."""
    query = select(links.c.device_id, links.c.driver, links.c.lease_until)
    return [(row[0], row[1], row[2]) for row in await conn.execute(query)]


async def lease(
    conn: AsyncConnection, driver: str, now: datetime, until: datetime
) -> list[LinkRecord]:
    """Take or renew the lease on every link no other driver holds (or whose driver's lease
    ran out); the links `driver` holds now. A conditional UPDATE: of two drivers, the row
    count says which won."""
    free = or_(links.c.driver.is_(None), links.c.driver == driver, links.c.lease_until < now)
    await conn.execute(update(links).where(free).values(driver=driver, lease_until=until))
    query = select(*_COLUMNS).select_from(_JOINED).where(links.c.driver == driver)
    return [_record(row) for row in await conn.execute(query.order_by(links.c.device_id))]


async def leases_of(conn: AsyncConnection, driver: str) -> list[LinkRecord]:
    query = select(*_COLUMNS).select_from(_JOINED).where(links.c.driver == driver)
    return [_record(row) for row in await conn.execute(query.order_by(links.c.device_id))]


async def release(conn: AsyncConnection, driver: str) -> None:
    query = update(links).where(links.c.driver == driver)
    await conn.execute(query.values(driver=None, lease_until=None))


async def set_state(
    conn: AsyncConnection, device_id: str, state: str, detail: str | None, now: datetime
) -> None:
    values = {"state": state, "detail": detail, "state_at": now}
    await conn.execute(update(links).where(links.c.device_id == device_id).values(values))


# Parts.


async def planned(conn: AsyncConnection, device_id: str, message_ids: list[int]) -> set[int]:
    """Which of these messages have parts planned on the link already."""
    if not message_ids:
        return set()
    query = select(parts.c.message_id).where(
        parts.c.device_id == device_id, parts.c.message_id.in_(message_ids)
    )
    return {row[0] for row in await conn.execute(query.distinct())}


async def plan(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(parts), rows)


async def unsent(conn: AsyncConnection, device_id: str, limit: int) -> list[PartJob]:
    """Parts planned and not submitted, in the order they were planned."""
    query = (
        select(
            parts.c.id, parts.c.message_id, messages.c.ext_id, parts.c.phone_number,
            parts.c.part, parts.c.parts, messages.c.text, messages.c.with_delivery_report,
        )
        .select_from(parts.join(messages, messages.c.id == parts.c.message_id))
        .where(
            parts.c.device_id == device_id, parts.c.outcome.is_(None),
            parts.c.submitted_at.is_(None),
        )
        .order_by(parts.c.id)
        .limit(limit)
    )  # fmt: skip
    return [
        PartJob(pk, mid, ext, number, n, total, text or "", bool(report))
        for pk, mid, ext, number, n, total, text, report in await conn.execute(query)
    ]


async def intend(conn: AsyncConnection, ids: list[int], now: datetime) -> None:
    """Record that these parts' submit_sm are about to go out."""
    await conn.execute(update(parts).where(parts.c.id.in_(ids)).values(submitted_at=now))


async def unintend(conn: AsyncConnection, ids: list[int]) -> None:
    """These parts were not sent after all (the carrier refused them for now, or the session
    was down before the submit_sm): planned again."""
    query = update(parts).where(parts.c.id.in_(ids), parts.c.outcome.is_(None))
    await conn.execute(query.values(submitted_at=None))


async def set_outcomes(
    conn: AsyncConnection, outcomes: Iterable[tuple[int, str, str | None, str | None]]
) -> None:
    """(part, outcome, carrier id, error) for parts that had none yet."""
    rows = [{"pk": pk, "o": o, "s": smsc_id, "e": error} for pk, o, smsc_id, error in outcomes]
    if rows:
        query = (
            update(parts)
            .where(parts.c.id == bindparam("pk"), parts.c.outcome.is_(None))
            .values(outcome=bindparam("o"), smsc_id=bindparam("s"), error=bindparam("e"))
        )
        await conn.execute(query, rows)


async def in_doubt(conn: AsyncConnection, device_id: str) -> list[int]:
    """Parts submitted (intent recorded) whose answer was never recorded."""
    query = select(parts.c.id).where(
        parts.c.device_id == device_id, parts.c.outcome.is_(None),
        parts.c.submitted_at.is_not(None),
    )  # fmt: skip
    return [row[0] for row in await conn.execute(query)]


#: smsc_ids per statement when receipts are applied (well under SQLite's bound parameters).
RECEIPT_CHUNK = 500

#: A receipt to apply: the carrier's id of the part, the part's outcome, its error.
Applied = tuple[str, str, str | None]


async def receipted(
    conn: AsyncConnection, device_id: str, receipts: list[Applied]
) -> dict[str, tuple[int, str]]:
    """Apply receipts to the parts the carrier gave their `smsc_id` (its latest part with
    that id, should the carrier reuse ids): (message, recipient) by smsc_id, for the ids
    some part has. Only an accepted part moves; a repeated receipt changes nothing (of two
    for one part in `receipts`, the first counts). One SELECT and one UPDATE per outcome and
    error for each RECEIPT_CHUNK receipts."""
    found: dict[str, tuple[int, str]] = {}
    for start in range(0, len(receipts), RECEIPT_CHUNK):
        chunk = receipts[start : start + RECEIPT_CHUNK]
        query = (
            select(parts.c.smsc_id, parts.c.id, parts.c.message_id, parts.c.phone_number,
                   parts.c.outcome)
            .where(parts.c.device_id == device_id,
                   parts.c.smsc_id.in_(sorted({smsc_id for smsc_id, _, _ in chunk})))
            .order_by(parts.c.id.desc())
        )  # fmt: skip
        latest: dict[str, tuple[int, int, str, str | None]] = {}
        for smsc_id, pk, message_id, number, outcome in await conn.execute(query):
            latest.setdefault(smsc_id, (pk, message_id, number, outcome))
        moves: dict[tuple[str, str | None], list[int]] = {}
        moved: set[int] = set()
        for smsc_id, outcome, error in chunk:
            row = latest.get(smsc_id)
            if row is None:
                continue
            found[smsc_id] = (row[1], row[2])
            if row[3] == ACCEPTED and row[0] not in moved:
                moved.add(row[0])
                moves.setdefault((outcome, error), []).append(row[0])
        for (outcome, error), ids in moves.items():
            change = update(parts).where(parts.c.id.in_(ids), parts.c.outcome == ACCEPTED)
            await conn.execute(change.values(outcome=outcome, error=error))
    return found


async def pairs_of(conn: AsyncConnection, ids: list[int]) -> set[tuple[int, str]]:
    """(message, recipient) of these parts."""
    if not ids:
        return set()
    query = select(parts.c.message_id, parts.c.phone_number).where(parts.c.id.in_(ids))
    return {(row[0], row[1]) for row in await conn.execute(query)}


async def outcomes_of(
    conn: AsyncConnection, message_ids: list[int]
) -> dict[tuple[int, str], list[tuple[str | None, str | None]]]:
    """Every part's (outcome, error) of these messages, by (message, recipient)."""
    found: dict[tuple[int, str], list[tuple[str | None, str | None]]] = {}
    if message_ids:
        query = (
            select(parts.c.message_id, parts.c.phone_number, parts.c.outcome, parts.c.error)
            .where(parts.c.message_id.in_(message_ids))
            .order_by(parts.c.id)
        )
        for mid, number, outcome, error in await conn.execute(query):
            found.setdefault((mid, number), []).append((outcome, error))
    return found


async def open_pairs(conn: AsyncConnection, device_id: str) -> set[tuple[int, str]]:
    """(message, recipient) of the parts of every message the link holds that is not
    settled yet (Processed or Sent)."""
    held = and_(
        messages.c.id == parts.c.message_id,
        messages.c.device_id == device_id,
        messages.c.state.in_(_UNSETTLED),
    )
    query = select(parts.c.message_id, parts.c.phone_number).where(
        parts.c.device_id == device_id, held
    )
    return {(row[0], row[1]) for row in await conn.execute(query.distinct())}


async def ext_ids(conn: AsyncConnection, message_ids: list[int]) -> dict[int, str]:
    query = select(messages.c.id, messages.c.ext_id).where(messages.c.id.in_(message_ids))
    return {row[0]: row[1] for row in await conn.execute(query)}


async def cancel_unsent(conn: AsyncConnection, device_id: str, message_id: int) -> bool:
    """Cancel a message's parts on the link if none was submitted yet; whether it was."""
    mine = and_(parts.c.device_id == device_id, parts.c.message_id == message_id)
    sent = select(parts.c.id).where(mine, parts.c.submitted_at.is_not(None)).limit(1)
    if (await conn.execute(sent)).first() is not None:
        return False
    await conn.execute(update(parts).where(mine).values(outcome=CANCELLED))
    return True
