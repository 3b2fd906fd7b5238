"""Queries of conversations: what was sent to a phone number and what it sent, the owner's
latest messages of both kinds (the list of conversations, search), and both in batches for
CSV exports. Every query is scoped to its owner."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, literal, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.inbox.repository import inbox
from smsgw.messages.repository import messages, recipients


@dataclass(frozen=True)
class Item:
    """One entry of a conversation: a message sent to the number (`outgoing`, with that
    recipient's state and error) or a message received from it.

    `kind` says what the text is: "text", "encrypted" (smsgw cannot read it), "data" (a data
    SMS), "mms" (an MMS: `text` is its subject or body)."""

    outgoing: bool
    at: datetime
    id: str
    number: str
    kind: str
    text: str | None
    device_id: str | None
    state: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Search:
    """What a search looks for: `text` within texts (case-insensitive), `digits` within
    numbers; either may be None."""

    text: str | None = None
    digits: str | None = None


def _contains(value: str) -> str:
    """A LIKE pattern for text containing `value` (its own % _ and \\ taken literally)."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _matches(
    text: ColumnElement[Any],
    number: ColumnElement[Any],
    search: Search,
    readable: ColumnElement[bool] | None = None,
) -> ColumnElement[bool]:
    """Rows whose text contains `search.text` (only `readable` ones, when given) or whose
    number contains `search.digits`."""
    found: list[ColumnElement[bool]] = []
    if search.text is not None:
        contains = text.ilike(_contains(search.text), escape="\\")
        found.append(contains if readable is None else and_(readable, contains))
    if search.digits is not None:
        found.append(number.like(_contains(search.digits), escape="\\"))
    return or_(*found) if found else false()


def _outgoing_kind(row: Any) -> str:
    if row.is_encrypted:
        return "encrypted"
    return "data" if row.data is not None else "text"


def _incoming_kind(row: Any) -> str:
    if row.type == "DATA_SMS":
        return "data"
    return "mms" if row.type in ("MMS", "MMS_DOWNLOADED") else "text"


_SENT_COLUMNS = (
    messages.c.ext_id, messages.c.created_at, messages.c.is_encrypted, messages.c.device_id,
    recipients.c.phone_number, recipients.c.state, recipients.c.error,
)  # fmt: skip
_RECEIVED_COLUMNS = (
    inbox.c.ext_id,
    inbox.c.received_at,
    inbox.c.type,
    inbox.c.sender,
    inbox.c.device_id,
)


def _sent_item(row: Any) -> Item:
    return Item(
        True, row.created_at, row.ext_id, row.phone_number, _outgoing_kind(row), row.text,
        row.device_id, row.state, row.error,
    )  # fmt: skip


def _received_item(row: Any) -> Item:
    kind = _incoming_kind(row)
    text = (row.subject or row.text) if kind == "mms" else row.text
    return Item(False, row.received_at, row.ext_id, row.sender or "", kind, text, row.device_id)


@dataclass(frozen=True)
class Mark:
    """Where a message to or from `number` is: the message's key (in `messages` when
    `outgoing`, else in `inbox`) and its time. What the list of conversations groups, before
    reading the few messages a page shows."""

    at: datetime
    outgoing: bool
    pk: int
    number: str


async def latest_sent(
    conn: AsyncConnection, user_id: int, window: int, search: Search | None = None
) -> list[Mark]:
    """The recipients of the owner's latest `window` messages (only those matching `search`,
    if given). Without a search, from indexes alone (no message is read)."""
    columns = [messages.c.id, messages.c.created_at]
    if search is not None:
        columns += [messages.c.text, messages.c.is_encrypted]
    latest = (
        select(*columns)
        .where(messages.c.user_id == user_id)
        .order_by(messages.c.created_at.desc(), messages.c.id.desc())
        .limit(window)
        .subquery()
    )
    query = select(latest.c.created_at, latest.c.id, recipients.c.phone_number).join_from(
        latest, recipients, recipients.c.message_id == latest.c.id
    )
    if search is not None:
        readable = latest.c.is_encrypted.is_(False)  # an encrypted text is not searched
        query = query.where(_matches(latest.c.text, recipients.c.phone_number, search, readable))
    return [Mark(at, True, pk, number) for at, pk, number in await conn.execute(query)]


async def latest_received(
    conn: AsyncConnection, user_id: int, window: int, search: Search | None = None
) -> list[Mark]:
    """The senders of the owner's latest `window` received messages (only those matching
    `search`, if given)."""
    columns = [inbox.c.id, inbox.c.received_at, inbox.c.sender]
    if search is not None:
        columns += [inbox.c.text, inbox.c.subject]
    latest = (
        select(*columns)
        .where(inbox.c.user_id == user_id)
        .order_by(inbox.c.received_at.desc(), inbox.c.id.desc())
        .limit(window)
        .subquery()
    )
    query = select(latest.c.received_at, latest.c.id, latest.c.sender)
    if search is not None:
        text = func.coalesce(latest.c.text, latest.c.subject)
        query = query.where(_matches(text, latest.c.sender, search))
    return [Mark(at, False, pk, sender or "") for at, pk, sender in await conn.execute(query)]


async def items_of(
    conn: AsyncConnection, user_id: int, marks: Collection[Mark]
) -> dict[Mark, Item]:
    """The owner's messages `marks` point to, as items, by mark."""
    wanted = set(marks)
    sent = {m.pk for m in wanted if m.outgoing}
    received = {m.pk for m in wanted if not m.outgoing}
    found: dict[Mark, Item] = {}
    if sent:
        query = (
            select(messages.c.id.label("pk"), *_SENT_COLUMNS, messages.c.text, messages.c.data)
            .join_from(recipients, messages, messages.c.id == recipients.c.message_id)
            .where(messages.c.id.in_(sent), messages.c.user_id == user_id)
        )
        for row in await conn.execute(query):
            mark = Mark(row.created_at, True, row.pk, row.phone_number)
            if mark in wanted:
                found[mark] = _sent_item(row)
    if received:
        rows = select(
            inbox.c.id.label("pk"), *_RECEIVED_COLUMNS, inbox.c.text, inbox.c.subject
        ).where(inbox.c.id.in_(received), inbox.c.user_id == user_id)
        for got in await conn.execute(rows):
            found[Mark(got.received_at, False, got.pk, got.sender or "")] = _received_item(got)
    return found


async def newest_marks(conn: AsyncConnection, user_id: int, numbers: Collection[str]) -> list[Mark]:
    """The owner's newest message to any of `numbers` and newest one from them (those that
    exist), through the indexes by number."""
    sent = (
        select(messages.c.created_at, messages.c.id, recipients.c.phone_number)
        .join_from(recipients, messages, messages.c.id == recipients.c.message_id)
        .where(recipients.c.phone_number.in_(list(numbers)), messages.c.user_id == user_id)
        .order_by(messages.c.created_at.desc(), messages.c.id.desc())
        .limit(1)
    )
    received = (
        select(inbox.c.received_at, inbox.c.id, inbox.c.sender)
        .where(inbox.c.user_id == user_id, inbox.c.sender.in_(list(numbers)))
        .order_by(inbox.c.received_at.desc(), inbox.c.id.desc())
        .limit(1)
    )
    marks = [Mark(at, True, pk, n) for at, pk, n in await conn.execute(sent)]
    return marks + [Mark(at, False, pk, n or "") for at, pk, n in await conn.execute(received)]


async def sent_to(
    conn: AsyncConnection, user_id: int, numbers: Collection[str], limit: int
) -> list[Item]:
    """The owner's first `limit` messages to any of `numbers`, newest first, each with that
    recipient's state (through the index of recipients by number)."""
    query = (
        select(*_SENT_COLUMNS, messages.c.text, messages.c.data)
        .join_from(recipients, messages, messages.c.id == recipients.c.message_id)
        .where(recipients.c.phone_number.in_(list(numbers)), messages.c.user_id == user_id)
        .order_by(messages.c.created_at.desc(), messages.c.id.desc())
        .limit(limit)
    )
    return [_sent_item(row) for row in await conn.execute(query)]


async def received_from(
    conn: AsyncConnection, user_id: int, numbers: Collection[str], limit: int
) -> list[Item]:
    """The owner's first `limit` messages received from any of `numbers`, newest first."""
    query = (
        select(*_RECEIVED_COLUMNS, inbox.c.text, inbox.c.subject)
        .where(inbox.c.user_id == user_id, inbox.c.sender.in_(list(numbers)))
        .order_by(inbox.c.received_at.desc(), inbox.c.id.desc())
        .limit(limit)
    )
    return [_received_item(row) for row in await conn.execute(query)]


def _capped(query: Select[Any], key: str, kind: str, cap: int) -> Select[str, str, int]:
    capped = query.limit(cap).subquery()
    return select(literal(key).label("key"), literal(kind).label("kind"), func.count()).select_from(
        capped
    )


async def counts(
    conn: AsyncConnection, user_id: int, numbers: Mapping[str, Collection[str]], cap: int
) -> dict[str, tuple[int, int]]:
    """For each conversation (its number: its stored forms), how many of the owner's
    messages went to it and came from it, each counted up to `cap` (a count of a million
    rows would take a second); one statement for them all."""
    parts = []
    for key, forms in numbers.items():
        sent = (
            select(literal(1))
            .select_from(recipients.join(messages, messages.c.id == recipients.c.message_id))
            .where(recipients.c.phone_number.in_(list(forms)), messages.c.user_id == user_id)
        )
        received = select(literal(1)).where(
            inbox.c.user_id == user_id, inbox.c.sender.in_(list(forms))
        )
        parts += [_capped(sent, key, "sent", cap), _capped(received, key, "received", cap)]
    found = {key: [0, 0] for key in numbers}
    if parts:
        for key, kind, n in await conn.execute(union_all(*parts)):
            found[key][0 if kind == "sent" else 1] = int(n)
    return {key: (sent, received) for key, (sent, received) in found.items()}


async def messages_between(
    conn: AsyncConnection,
    user_id: int,
    span: tuple[datetime, datetime],
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[Any]:
    """Up to `limit` of the owner's messages created in [since, until), oldest first,
    following the message `after` (its creation time and key) when given."""
    created = messages.c.created_at
    query = select(
        messages.c.id, messages.c.ext_id, created, messages.c.state, messages.c.device_id,
        messages.c.sim_number, messages.c.is_encrypted, messages.c.text, messages.c.data,
        messages.c.port,
    ).where(messages.c.user_id == user_id, created >= span[0], created < span[1])  # fmt: skip
    if after is not None:
        # A range first, then the tie-break: so the index (user_id, created_at) starts at
        # the cursor (as messages/repository.py `_after` explains).
        query = query.where(created >= after[0], or_(created > after[0], messages.c.id > after[1]))
    query = query.order_by(created, messages.c.id).limit(limit)
    return list(await conn.execute(query))


async def recipients_of(conn: AsyncConnection, pks: Collection[int]) -> dict[int, list[Any]]:
    """The recipients of these messages (number, state, error), by message, in order."""
    query = (
        select(recipients.c.message_id, recipients.c.phone_number, recipients.c.state,
               recipients.c.error)
        .where(recipients.c.message_id.in_(list(pks)))
        .order_by(recipients.c.message_id, recipients.c.position)
    )  # fmt: skip
    found: dict[int, list[Any]] = {}
    for row in await conn.execute(query):
        found.setdefault(row.message_id, []).append(row)
    return found


async def received_between(
    conn: AsyncConnection,
    user_id: int,
    span: tuple[datetime, datetime],
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[Any]:
    """Up to `limit` of the owner's received messages of [since, until), oldest first,
    following the row `after` (its received_at and key) when given."""
    received = inbox.c.received_at
    query = select(
        inbox.c.id, inbox.c.ext_id, received, inbox.c.type, inbox.c.sender, inbox.c.recipient,
        inbox.c.device_id, inbox.c.sim_number, inbox.c.text, inbox.c.data, inbox.c.subject,
    ).where(inbox.c.user_id == user_id, received >= span[0], received < span[1])  # fmt: skip
    if after is not None:
        query = query.where(received >= after[0], or_(received > after[0], inbox.c.id > after[1]))
    query = query.order_by(received, inbox.c.id).limit(limit)
    return list(await conn.execute(query))
