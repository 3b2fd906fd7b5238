"""Event log use cases: record an entry (inside the caller's transaction), list, prune.

Entries say what happened to an owner's messages, phones, webhooks and tokens. They never
hold message text or recipients' numbers: only ids, states, and error descriptions.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.engine import ColumnWriter, Database, RowInsert, UnitConnection, delete_older
from smsgw.domain import clock
from smsgw.domain.clock import format_timestamp
from smsgw.domain.states import ProcessingState
from smsgw.logs import repository
from smsgw.logs.repository import EntryRecord, entries

log = logging.getLogger("smsgw.logs")
#: Most entries one `GET /logs` answers; narrow `from`/`to` to see more.
MAX_ENTRIES = 1000
MAX_MESSAGE = 512
_INSERT = RowInsert(entries)
#: Order of states reported at the same instant.
ORDER = {state.value: rank for rank, state in enumerate(ProcessingState)}


class Priority(StrEnum):
    """Upstream's LogEntry priorities."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


class Module(StrEnum):
    """Which part of smsgw wrote an entry."""

    MESSAGES = "messages"
    DEVICES = "devices"
    WEBHOOKS = "webhooks"
    TOKENS = "tokens"
    SETTINGS = "settings"


def _row(
    user_id: int,
    module: str,
    priority: Priority,
    message: str,
    context: dict[str, Any] | None,
    created: datetime | None = None,
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "created_at": clock.now() if created is None else created,
        "module": str(module)[:32],
        "priority": Priority(priority).value,
        "message": message[:MAX_MESSAGE],
        "context": context,
    }


async def record(
    conn: AsyncConnection,
    user_id: int,
    module: str,
    priority: Priority,
    message: str,
    context: dict[str, Any] | None = None,
) -> None:
    """Add one entry to `user_id`'s log, in the caller's (write) transaction.

    It is kept exactly when the caller's transaction commits. `message` and `context` must
    not carry message text or phone numbers (callers pass ids, states and errors).
    """
    await repository.add(conn, [_row(user_id, module, priority, message, context)])


async def record_unit(
    conn: UnitConnection,
    user_id: int,
    module: str,
    priority: Priority,
    message: str,
    context: dict[str, Any] | None = None,
) -> None:
    """`record` for units of work run by `Database.write_unit` (a plain DB-API connection):
    the entry is kept exactly when that unit commits."""
    await _INSERT.many(conn, [_row(user_id, module, priority, message, context)])


#: A state entry as `add_rows_unit` writes it: (owner, created, priority, message, context).
#: A tuple, not `_row`'s mapping: a link writes three of these for every message it sends.
StateRow = tuple[int, datetime, str, str, dict[str, Any]]
_STATE_INSERT = (
    f"INSERT INTO {entries.name} (user_id, created_at, module, priority, message, context)"  # noqa: S608
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_CREATED = ColumnWriter(entries.c.created_at)
_CONTEXT = ColumnWriter(entries.c.context)
_MESSAGES = Module.MESSAGES.value


def _state_entry(
    user_id: int,
    message_id: str,
    state: str,
    device_id: str | None,
    error: str | None,
    reported_at: str | None,
    created: datetime,
) -> StateRow:
    """The entry that message `message_id` reached `state` (Failed: a warning)."""
    context: dict[str, Any] = {"messageId": message_id, "state": state}
    if reported_at is not None:
        context["reportedAt"] = reported_at
    if device_id is not None:
        context["deviceId"] = device_id
    if error is not None:
        context["error"] = error
    priority = Priority.WARN.value if state == "Failed" else Priority.INFO.value
    text = f"message {message_id} is {state}" + (f": {error}" if error else "")
    return (user_id, created, priority, text[:MAX_MESSAGE], context)


async def message_state(
    conn: AsyncConnection,
    user_id: int,
    message_id: str,
    state: str,
    device_id: str | None = None,
    error: str | None = None,
) -> None:
    """Record that message `message_id` reached `state` (Failed entries are warnings)."""
    entry = _state_entry(user_id, message_id, state, device_id, error, None, clock.now())
    owner, created, priority, text, context = entry
    await repository.add(conn, [_row(owner, _MESSAGES, Priority(priority), text, context, created)])


async def message_state_unit(
    conn: UnitConnection, user_id: int, message_id: str, state: str, error: str | None = None
) -> None:
    """`message_state` (no phone) for units of work of `Database.write_unit`."""
    entry = _state_entry(user_id, message_id, state, None, error, None, clock.now())
    await add_rows_unit(conn, [entry])


async def new_states_unit(
    conn: UnitConnection,
    user_id: int,
    message_id: str,
    fresh: dict[str, datetime],
    device_id: str,
    error: str | None,
) -> None:
    """One entry per state in `fresh` (state -> when, as a phone reported it; states the
    message has no history entry for yet), in the order they happened; `error` goes on a
    Failed entry. For units of work of `Database.write_unit`."""
    await add_rows_unit(conn, new_state_rows(user_id, message_id, fresh, device_id, error))


def new_state_rows(
    user_id: int,
    message_id: str,
    fresh: dict[str, datetime],
    device_id: str,
    error: str | None,
    created: datetime | None = None,
) -> list[StateRow]:
    """`new_states_unit`'s rows, for `add_rows_unit` (several messages' in one statement);
    `created`: when they are written (the clock's now unless given: a unit's own now).
    The same entries as `message_state` writes, with the state's time as `reportedAt`."""
    created = clock.now() if created is None else created
    rows = []
    for at, _, state in sorted((at, ORDER.get(s, 0), s) for s, at in fresh.items()):
        failed = error if state == "Failed" else None
        reported = _reported_at(at)
        rows.append(_state_entry(user_id, message_id, state, device_id, failed, reported, created))
    return rows


@functools.lru_cache(maxsize=64)
def _reported_at(at: datetime) -> str:
    """`format_timestamp`, remembered: the entries of one unit mostly share its now."""
    return format_timestamp(at)


async def add_rows_unit(conn: UnitConnection, rows: list[StateRow]) -> None:
    """Entries made by `new_state_rows` (or `_state_entry`), in their order."""
    if rows:
        await conn.executemany(
            _STATE_INSERT,
            [
                (owner, _CREATED(conn, created), _MESSAGES, priority, text, _CONTEXT(conn, context))
                for owner, created, priority, text, context in rows
            ],
        )


async def messages_failed(conn: AsyncConnection, keys: list[int], error: str) -> None:
    """Record, for each message key (any owner), that it failed with `error`."""
    rows = [
        _row(
            user_id,
            Module.MESSAGES,
            Priority.WARN,
            f"message {ext_id} is Failed: {error}",
            {"messageId": ext_id, "state": "Failed", "error": error},
        )
        for user_id, ext_id in await repository.owners_of(conn, keys)
    ]
    await repository.add(conn, rows)


async def phone_event(conn: AsyncConnection, user_id: int, device_id: str, what: str) -> None:
    """Record a phone's registration, connection or disconnection (`what` says which)."""
    context = {"deviceId": device_id, "event": what}
    await record(conn, user_id, Module.DEVICES, Priority.INFO, f"phone {device_id} {what}", context)


async def list_entries(
    db: Database, user_id: int, since: datetime | None, until: datetime | None
) -> list[EntryRecord]:
    """The owner's entries created in [since, until), oldest first, at most MAX_ENTRIES; none
    when `since` is after `until` (an empty window, as the other lists read it)."""
    if since is not None and until is not None and since > until:
        return []
    async with db.read() as conn:
        return await repository.between(conn, user_id, since, until, MAX_ENTRIES)


async def prune(db: Database, retention_days: int) -> int:
    """Delete entries older than `retention_days`, in small batches (db/engine.py,
    `delete_in_batches`); how many went."""
    return await delete_older(
        db, entries.c.created_at, clock.now() - timedelta(days=retention_days)
    )


_pending: set[asyncio.Task[None]] = set()


async def note_phone(db: Database, user_id: int, device_id: str, what: str) -> None:
    """`phone_event` in a transaction of its own; a failure is logged, never raised (the
    event log must not break a phone's connection)."""
    try:
        async with db.write() as conn:
            await phone_event(conn, user_id, device_id, what)
    except Exception:
        log.exception("could not record that phone %s %s", device_id, what)


def note_phone_later(db: Database, user_id: int, device_id: str, what: str) -> None:
    """`note_phone` in the background: for places that cannot wait (a closing stream)."""
    task = asyncio.get_running_loop().create_task(note_phone(db, user_id, device_id, what))
    _pending.add(task)
    task.add_done_callback(_pending.discard)
