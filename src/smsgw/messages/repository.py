"""Queries on messages, recipients and state history. Every query is scoped to its owner."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.base import table_of
from smsgw.db.engine import (
    ColumnReader,
    ColumnWriter,
    Details,
    RowInsert,
    Scalar,
    UnitConnection,
    marks,
    upsert,
)
from smsgw.devices.models import Device
from smsgw.domain.states import FINAL_STATES, ProcessingState
from smsgw.messages.models import (
    Message,
    MessageCount,
    MessageCountChange,
    MessageStateEntry,
    Recipient,
)
from smsgw.optouts import repository as optouts

messages = table_of(Message)
recipients = table_of(Recipient)
history = table_of(MessageStateEntry)
devices = table_of(Device)
counts = table_of(MessageCount)
count_changes = table_of(MessageCountChange)


@dataclass
class RecipientRecord:
    phone_number: str
    state: str
    error: str | None


@dataclass
class MessageRecord:
    """A message as stored, with its recipients (in order) and state history."""

    pk: int
    id: str
    device_id: str | None
    state: str
    text: str | None
    data: str | None
    port: int | None
    is_encrypted: bool
    is_hashed: bool
    sim_number: int | None
    with_delivery_report: bool
    priority: int
    valid_until: datetime | None
    schedule_at: datetime | None
    created_at: datetime
    claimed_at: datetime | None
    recipients: list[RecipientRecord] = field(default_factory=list)
    states: dict[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class ListFilter:
    """Filters of `GET /messages`; `newest_first` orders by creation time descending."""

    since: datetime | None = None
    until: datetime | None = None
    state: str | None = None
    device_id: str | None = None
    newest_first: bool = True
    offset: int = 0
    limit: int = 20
    #: Only the messages after this one in the order (a cursor: its creation time and key).
    after: tuple[datetime, int] | None = None


def message_lock(owner: int, ext_id: str) -> str:
    """The name a unit gives the owner's message `ext_id` among what it locks (`write_unit`'s
    locks): a send with the client's own id, a report of the message."""
    return f"message {owner} {ext_id}"


# Writes and checks of sending, for `Database.write_unit` (a plain DB-API connection):
# sending is the hot path, and these cost a tenth of SQLAlchemy statements.
_message_insert = RowInsert(messages)
_recipient_insert = RowInsert(recipients)
_history_insert = RowInsert(history)
_read_last_seen = ColumnReader(devices.c.last_seen)


async def store_message(
    conn: UnitConnection, values: dict[str, Any], numbers: list[str], now: datetime
) -> int:
    """Store a message, its recipients and its first history entry; return its key."""
    pk, _, _ = await store_checked(conn, values, numbers, now, [])
    return pk


async def store_checked(
    conn: UnitConnection,
    values: dict[str, Any],
    numbers: list[str],
    now: datetime,
    keys: list[str],
    also: Scalar | None = None,
) -> tuple[int, list[int], Any]:
    """`store_message`; its key, the positions of the recipients whose number (as `keys`
    gives them, one per recipient; none to skip the check) is on the owner's opt-out list,
    and the value of `also` (None without). The check and `also` cost no statement of their
    own on PostgreSQL (they go with the inserts), one on SQLite; only when a number is
    listed does a second lookup say which."""
    state = values["state"]
    recipient_rows = [
        {"position": i, "phone_number": n, "state": state} for i, n in enumerate(numbers)
    ]
    details = (
        Details(_recipient_insert, "message_id", recipient_rows),
        Details(_history_insert, "message_id", [{"state": state, "at": now}]),
    )
    user_id = values["user_id"]
    scalars = [optouts.how_many_listed(user_id, keys)] if keys else []
    if also is not None:
        scalars.append(also)
    pk, got = await _message_insert.one_with_scalars(conn, values, details, scalars)
    listed, value = (got[0] if keys else 0), (got[-1] if also is not None else None)
    if not listed:
        return pk, [], value
    found = await optouts.listed(conn, user_id, keys)
    return pk, [i for i, key in enumerate(keys) if key in found], value


async def fail_recipients(
    conn: UnitConnection, pk: int, positions: list[int], error: str, now: datetime, whole: bool
) -> None:
    """Fail the recipients at `positions` of message `pk` with `error`; with `whole` (they
    are all of its recipients) the message too, with its history entry."""
    failed = ProcessingState.FAILED.value
    query = (
        "UPDATE recipients SET state = ?, error = ?"  # noqa: S608
        f" WHERE message_id = ? AND position IN ({marks(len(positions))})"
    )
    await conn.execute(query, [failed, error, pk, *positions])
    if whole:
        stamp = _write_at(conn, now)
        await conn.execute(
            "UPDATE messages SET state = ?, updated_at = ? WHERE id = ?", (failed, stamp, pk)
        )
        await _history_insert.many(conn, [{"message_id": pk, "state": failed, "at": now}])


async def set_parts(conn: UnitConnection, pk: int, parts: int) -> None:
    """What sending message `pk` costs its phone's budget (routing/budgets.py)."""
    await conn.execute("UPDATE messages SET parts = ? WHERE id = ?", (parts, pk))


#: The columns of a `MessageRecord` (without its details), in its order, for units of work.
RECORD_COLUMNS = (
    "id, ext_id, device_id, state, text, data, port, is_encrypted, is_hashed, sim_number,"
    " with_delivery_report, priority, valid_until, schedule_at, created_at, claimed_at"
)
_read_at = ColumnReader(messages.c.created_at)  # every timestamp column has this type
_read_bool = ColumnReader(messages.c.is_encrypted)
_write_at = ColumnWriter(messages.c.created_at)


def record_of(conn: UnitConnection, row: tuple[Any, ...]) -> MessageRecord:
    """A message read with RECORD_COLUMNS on a unit connection, typed as SQLAlchemy would."""
    (pk, ext_id, device_id, state, text, data, port, encrypted, hashed, sim, report, priority,
     valid_until, schedule_at, created_at, claimed_at) = row  # fmt: skip
    return MessageRecord(
        pk, ext_id, device_id, state, text, data, port, _read_bool(conn, encrypted),
        _read_bool(conn, hashed), sim, _read_bool(conn, report), priority,
        _read_at(conn, valid_until), _read_at(conn, schedule_at), _read_at(conn, created_at),
        _read_at(conn, claimed_at),
    )  # fmt: skip


async def read_by_ext_id(conn: UnitConnection, user_id: int, ext_id: str) -> MessageRecord | None:
    """The owner's message `ext_id` with its details: three lookups by key, as plain
    statements (a unit of work: `Database.read_unit`, or `DriverUnit` in a write)."""
    query = f"SELECT {RECORD_COLUMNS} FROM messages WHERE user_id = ? AND ext_id = ?"  # noqa: S608
    row = (await conn.execute(query, (user_id, ext_id))).fetchone()
    if row is None:
        return None
    record = record_of(conn, row)
    await read_details(conn, [record])
    return record


async def ext_id_in_use(conn: UnitConnection, user_id: int, ext_id: str) -> bool:
    """Whether the owner already has a message with this id."""
    query = "SELECT 1 FROM messages WHERE user_id = ? AND ext_id = ?"
    return (await conn.execute(query, (user_id, ext_id))).fetchone() is not None


async def devices_last_seen(
    conn: UnitConnection, user_id: int, device_id: str | None
) -> list[datetime]:
    """Last-seen times of the owner's devices (only `device_id` when given)."""
    params: list[int | str]
    query, params = "SELECT last_seen FROM devices WHERE user_id = ?", [user_id]
    if device_id is not None:
        query, params = query + " AND id = ?", [user_id, device_id]
    return [_read_last_seen(conn, row[0]) for row in await conn.execute(query, params)]


def _list_where(conn: UnitConnection, user_id: int, where: ListFilter) -> tuple[str, list[Any]]:
    """The WHERE of a list (its cursor aside) and its parameters."""
    clauses: list[str] = ["user_id = ?"]
    params: list[Any] = [user_id]
    for clause, moment in (("created_at >= ?", where.since), ("created_at < ?", where.until)):
        if moment is not None:
            clauses.append(clause)
            params.append(_write_at(conn, moment))
    for clause, value in (("state = ?", where.state), ("device_id = ?", where.device_id)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return " AND ".join(clauses), params


def _after(conn: UnitConnection, where: ListFilter) -> tuple[str, list[Any]]:
    """The condition of the messages after `where.after` in the list's order (creation
    time, then key), and its parameters; ("", []) without a cursor."""
    if where.after is None:
        return "", []
    at, pk = where.after
    stamp = _write_at(conn, at)
    # A range on the creation time first, then the tie-break: an index on (owner[, state],
    # created_at) then starts at the cursor. Written as `created < at OR (created = at AND
    # key < pk)` alone, neither SQLite nor PostgreSQL made a range of it with bound values:
    # they read the list from its start up to the cursor (bench/data: 0.4 s at half a
    # million messages deep, 0.3 ms so).
    if where.newest_first:
        return " AND created_at <= ? AND (created_at < ? OR id < ?)", [stamp, stamp, pk]
    return " AND created_at >= ? AND (created_at > ? OR id > ?)", [stamp, stamp, pk]


#: Deeper pages (`skip`) than this, and lists over a time range (whose count counts rows),
#: are read off the event loop (`list_page`); shallower ones are units of work on it.
SHALLOW_OFFSET = 1000


def is_shallow(where: ListFilter) -> bool:
    """Whether a page of `where` costs about what its rows cost (see SHALLOW_OFFSET)."""
    return where.offset <= SHALLOW_OFFSET and where.since is None and where.until is None


async def page(
    conn: UnitConnection, user_id: int, where: ListFilter
) -> tuple[list[MessageRecord], int, bool]:
    """One page of the owner's messages, the number of all that match (a cursor, `after`,
    does not change it), and whether more follow the page. Plain statements: a unit of
    work (`Database.read_unit`, or `DriverUnit` over `Database.read()`)."""
    total = await count(conn, user_id, where)
    clause, params = _list_where(conn, user_id, where)
    after, after_params = _after(conn, where)
    order = "created_at DESC, id DESC" if where.newest_first else "created_at, id"
    query = (
        f"SELECT {RECORD_COLUMNS} FROM messages WHERE {clause}{after}"  # noqa: S608
        f" ORDER BY {order} LIMIT ? OFFSET ?"
    )
    values = [*params, *after_params, where.limit + 1, where.offset]
    records = [record_of(conn, row) for row in await conn.execute(query, values)]
    more = len(records) > where.limit
    records = records[: where.limit]
    await read_details(conn, records)
    return records, total, more


async def read_details(conn: UnitConnection, records: list[MessageRecord]) -> None:
    """Add their recipients and state history to messages read on a unit connection."""
    if not records:
        return
    by_pk = {record.pk: record for record in records}
    keys = marks(len(by_pk))
    numbers = (
        "SELECT message_id, phone_number, state, error FROM recipients"  # noqa: S608
        f" WHERE message_id IN ({keys}) ORDER BY message_id, position"
    )
    for key, number, state, error in await conn.execute(numbers, list(by_pk)):
        by_pk[key].recipients.append(RecipientRecord(number, state, error))
    entries = f"SELECT message_id, state, at FROM message_states WHERE message_id IN ({keys})"  # noqa: S608
    for key, state, at in await conn.execute(entries + " ORDER BY at", list(by_pk)):
        by_pk[key].states[state] = _read_at(conn, at)


async def count(conn: UnitConnection, user_id: int, where: ListFilter) -> int:
    """How many of the owner's messages match `where` (its cursor and page aside). Without
    a time range, from the counts the triggers keep (one statement: one snapshot of the
    counts and of the changes not yet folded in), not by counting the messages."""
    if where.since is not None or where.until is not None:
        clause, params = _list_where(conn, user_id, where)
        query = f"SELECT count(*) FROM messages WHERE {clause}"  # noqa: S608
        return int((await conn.execute(query, params)).fetchone()[0])
    clause, params = _list_where(conn, user_id, where)
    query = (
        f"SELECT (SELECT coalesce(sum(n), 0) FROM message_counts WHERE {clause})"  # noqa: S608
        f" + (SELECT coalesce(sum(change), 0) FROM message_count_changes WHERE {clause})"
    )
    return int((await conn.execute(query, params + params)).fetchone()[0])


async def count_by_state(conn: AsyncConnection, virtual: bool | None = None) -> dict[str, int]:
    """How many messages of all owners are in each state, from the counts (as `count`):
    `virtual` True, only those of virtual phones (virtualphones/); False, all the others
    (a message no phone holds among them); None, all."""

    def kept(device_id: Any) -> Any:
        if virtual is None:
            return literal(True)
        phones = select(devices.c.id).where(devices.c.virtual.is_(True))
        return device_id.in_(phones) if virtual else device_id.not_in(phones)

    both = union_all(
        select(counts.c.state, counts.c.n.label("n")).where(kept(counts.c.device_id)),
        select(count_changes.c.state, count_changes.c.change.label("n")).where(
            kept(count_changes.c.device_id)
        ),
    ).subquery()
    rows = await conn.execute(select(both.c.state, func.sum(both.c.n)).group_by(both.c.state))
    return {str(state): int(n) for state, n in rows}


#: Changes of counts folded into the counts in one transaction (`fold_counts`).
FOLD_BATCH = 5000

#: PostgreSQL: take a batch of changes (SKIP LOCKED: another node's fold takes others) and
#: add them to the counts, in the counts' key order (two folds lock shared rows in one order).
_FOLD_POSTGRESQL = text(
    """WITH taken AS (
        DELETE FROM message_count_changes WHERE id = ANY(ARRAY(
            SELECT id FROM message_count_changes ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED
        ))
        RETURNING user_id, device_id, state, change
    ), summed AS (
        SELECT user_id, device_id, state, sum(change) AS n, count(*) AS changes
        FROM taken GROUP BY user_id, device_id, state
    ), added AS (
        INSERT INTO message_counts (user_id, device_id, state, n)
        SELECT user_id, device_id, state, n FROM summed ORDER BY user_id, device_id, state
        ON CONFLICT (user_id, device_id, state) DO UPDATE SET n = message_counts.n + excluded.n
    )
    SELECT coalesce(sum(changes), 0) FROM summed"""
)


async def fold_counts(conn: AsyncConnection, batch: int) -> int:
    """Fold up to `batch` of the oldest count changes into the counts; how many went."""
    if conn.dialect.name != "sqlite":
        return int((await conn.execute(_FOLD_POSTGRESQL, {"batch": batch})).scalar_one())
    # SQLite: the write transaction keeps every other writer out.
    oldest = select(count_changes.c.id).order_by(count_changes.c.id).limit(batch).subquery()
    last = (await conn.execute(select(func.max(oldest.c.id)))).scalar_one()
    if last is None:
        return 0
    taken = count_changes.c.id <= last
    summed = (
        select(
            count_changes.c.user_id,
            count_changes.c.device_id,
            count_changes.c.state,
            func.sum(count_changes.c.change),
        )
        .where(taken)
        .group_by(count_changes.c.user_id, count_changes.c.device_id, count_changes.c.state)
    )
    add = upsert(conn, counts).from_select(["user_id", "device_id", "state", "n"], summed)
    await conn.execute(
        add.on_conflict_do_update(
            index_elements=["user_id", "device_id", "state"],
            set_={"n": counts.c.n + add.excluded.n},
        )
    )
    return int((await conn.execute(delete(count_changes).where(taken))).rowcount or 0)


async def any_count_changes(conn: AsyncConnection) -> bool:
    return (await conn.execute(select(count_changes.c.id).limit(1))).first() is not None


def open_recipient() -> ColumnElement[bool]:
    """A recipient not in a final state: what smsgw's own changes of a whole message move (a
    recipient that failed already, as one opted out when the message was accepted, stays)."""
    return recipients.c.state.not_in([s.value for s in FINAL_STATES])


async def set_state(
    conn: AsyncConnection, pk: int, state: str, now: datetime, *, recipients_too: bool
) -> None:
    """Move a message (and optionally all its recipients) to `state`, recording when."""
    await conn.execute(
        update(messages).where(messages.c.id == pk).values(state=state, updated_at=now)
    )
    if recipients_too:
        await conn.execute(
            update(recipients)
            .where(recipients.c.message_id == pk, open_recipient())
            .values(state=state)
        )
    await conn.execute(insert(history).values(message_id=pk, state=state, at=now))


#: What retention deletes: messages nothing more happens to (a final state, or Sent: a
#: delivery report, if one was asked for, does not come after the retention period).
DONE = ("Cancelled", "Delivered", "Failed", "Sent")
