"""Queries of conversations: what was sent to a phone number and what it sent, the owner's
latest messages of both kinds (the list of conversations, search), and both in batches for
CSV exports. Every query is scoped to its owner."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.inbox.repository import inbox
from smsgw.messages.repository import messages, recipients

#: Characters of a text read for a preview (the pages show fewer).
PREVIEW = 80


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


def _text_start(column: Any) -> Any:
    return func.substr(column, 1, PREVIEW).label("text")


async def latest_sent(
    conn: AsyncConnection, user_id: int, window: int, search: Search | None = None
) -> list[Item]:
    """The recipients of the owner's latest `window` messages (matching `search`, if
    given), newest first, with the start of each text."""
    latest = (
        select(messages.c.id, messages.c.ext_id, messages.c.created_at, messages.c.text,
               messages.c.data, messages.c.is_encrypted, messages.c.device_id)
        .where(messages.c.user_id == user_id)
        .order_by(messages.c.created_at.desc(), messages.c.id.desc())
        .limit(window)
        .subquery()
    )  # fmt: skip
    query = (
        select(latest.c.ext_id, latest.c.created_at, latest.c.is_encrypted, latest.c.device_id,
               latest.c.data.is_not(None).label("has_data"), _text_start(latest.c.text),
               recipients.c.phone_number, recipients.c.state, recipients.c.error)
        .join_from(latest, recipients, recipients.c.message_id == latest.c.id)
        .order_by(latest.c.created_at.desc(), latest.c.id.desc(), recipients.c.position)
    )  # fmt: skip
    if search is not None:
        readable = latest.c.is_encrypted.is_(False)  # an encrypted text is not searched
        query = query.where(_matches(latest.c.text, recipients.c.phone_number, search, readable))
    return [
        Item(True, row.created_at, row.ext_id, row.phone_number,
             "encrypted" if row.is_encrypted else "data" if row.has_data else "text",
             row.text, row.device_id, row.state, row.error)
        for row in await conn.execute(query)
    ]  # fmt: skip


async def latest_received(
    conn: AsyncConnection, user_id: int, window: int, search: Search | None = None
) -> list[Item]:
    """The owner's latest `window` received messages (matching `search`, if given), newest
    first, with the start of each text."""
    latest = (
        select(inbox.c.id, *_RECEIVED_COLUMNS, inbox.c.text, inbox.c.subject)
        .where(inbox.c.user_id == user_id)
        .order_by(inbox.c.received_at.desc(), inbox.c.id.desc())
        .limit(window)
        .subquery()
    )
    query = select(
        latest.c.ext_id, latest.c.received_at, latest.c.type, latest.c.sender,
        latest.c.device_id, _text_start(latest.c.text), latest.c.subject,
    ).order_by(latest.c.received_at.desc(), latest.c.id.desc())  # fmt: skip
    if search is not None:
        text = func.coalesce(latest.c.text, latest.c.subject)
        query = query.where(_matches(text, latest.c.sender, search))
    return [_received_item(row) for row in await conn.execute(query)]


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


async def _count(conn: AsyncConnection, query: Select[Any], cap: int) -> int:
    capped = query.limit(cap).subquery()
    return int((await conn.execute(select(func.count()).select_from(capped))).scalar_one())


async def counts(
    conn: AsyncConnection, user_id: int, numbers: Collection[str], cap: int
) -> tuple[int, int]:
    """How many of the owner's messages went to `numbers` and came from them, each counted
    up to `cap` (a count of a million rows would take a second)."""
    sent = (
        select(literal(1))
        .select_from(recipients.join(messages, messages.c.id == recipients.c.message_id))
        .where(recipients.c.phone_number.in_(list(numbers)), messages.c.user_id == user_id)
    )
    received = select(literal(1)).where(
        inbox.c.user_id == user_id, inbox.c.sender.in_(list(numbers))
    )
    return await _count(conn, sent, cap), await _count(conn, received, cap)


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
