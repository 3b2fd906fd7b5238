"""CSV exports of an owner's messages (one line per recipient) and received messages over a
time range, for the API (`GET /exports/...`) and the dashboard alike.

Streamed: read in batches of BATCH rows, each batch in a short read transaction of its own
(a slow download never holds a transaction open), written out before the next is read, so a
large range never sits in memory. A cell a spreadsheet would read as a formula (starting
with = + - @, a tab or a carriage return) is written with a leading `'`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from smsgw.conversations import repository
from smsgw.db.engine import Database
from smsgw.domain.clock import format_timestamp
from smsgw.domain.errors import InvalidInput

MESSAGE_COLUMNS = (
    "id", "createdAt", "phoneNumber", "state", "error", "messageState", "deviceId",
    "simNumber", "isEncrypted", "text", "data", "port",
)  # fmt: skip
INBOX_COLUMNS = (
    "id", "receivedAt", "type", "sender", "recipient", "deviceId", "simNumber", "text",
    "data", "subject",
)  # fmt: skip
MAX_SPAN = timedelta(days=366)
BATCH = 500
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def check_span(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """[since, until) if it is a range an export takes; InvalidInput naming the field."""
    if until <= since:
        raise InvalidInput("to: must be after from")
    if until - since > MAX_SPAN:
        raise InvalidInput(f"to: a range of at most {MAX_SPAN.days} days")
    return since, until


def cell(value: Any) -> str:
    """A value as a CSV cell: text that would start a formula gets a leading `'`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_timestamp(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _lines(rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows([cell(value) for value in row] for row in rows)
    return out.getvalue()


def _message_lines(batch: list[Any], found: dict[int, list[Any]]) -> list[tuple[Any, ...]]:
    lines = []
    for m in batch:
        for r in found.get(m.id, []):
            lines.append((
                m.ext_id, m.created_at, r.phone_number, r.state, r.error, m.state, m.device_id,
                m.sim_number, m.is_encrypted, m.text, m.data, m.port,
            ))  # fmt: skip
    return lines


async def message_csv(
    db: Database, user_id: int, span: tuple[datetime, datetime]
) -> AsyncIterator[str]:
    """The owner's messages created in [since, until), oldest first, one line per
    recipient, MESSAGE_COLUMNS first."""
    yield _lines([MESSAGE_COLUMNS])
    after: tuple[datetime, int] | None = None
    while True:
        async with db.read() as conn:
            batch = await repository.messages_between(conn, user_id, span, after, BATCH)
            found = await repository.recipients_of(conn, [m.id for m in batch]) if batch else {}
        if batch:
            yield _lines(_message_lines(batch, found))
        if len(batch) < BATCH:
            return
        after = (batch[-1].created_at, batch[-1].id)


async def inbox_csv(
    db: Database, user_id: int, span: tuple[datetime, datetime]
) -> AsyncIterator[str]:
    """The owner's messages received in [since, until), oldest first, INBOX_COLUMNS first."""
    yield _lines([INBOX_COLUMNS])
    after: tuple[datetime, int] | None = None
    while True:
        async with db.read() as conn:
            batch = await repository.received_between(conn, user_id, span, after, BATCH)
        yield _lines(
            (r.ext_id, r.received_at, r.type, r.sender, r.recipient, r.device_id, r.sim_number,
             r.text, r.data, r.subject)
            for r in batch
        )  # fmt: skip
        if len(batch) < BATCH:
            return
        after = (batch[-1].received_at, batch[-1].id)


def filename(kind: str, span: tuple[datetime, datetime]) -> str:
    """`messages-20260301T000000Z-20260401T000000Z.csv` and the like."""
    since, until = (moment.strftime("%Y%m%dT%H%M%SZ") for moment in span)
    return f"{kind}-{since}-{until}.csv"
