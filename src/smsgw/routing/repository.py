"""Queries that move messages between the queue and phones. Claims are conditional UPDATEs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.config import ONLINE_WINDOW_SECONDS
from smsgw.db.engine import ColumnWriter, UnitConnection, among, marks, row_lock
from smsgw.domain.states import ProcessingState
from smsgw.messages import repository as stored
from smsgw.messages.models import QUEUED, UNTAKEN
from smsgw.messages.repository import MessageRecord, RecipientRecord, open_recipient
from smsgw.routing import rules
from smsgw.routing.budgets import EXPEDITED, UNBOUNDED, Budget, Limits, day_of, minute_of
from smsgw.routing.rules import Claimer, Rule

messages = stored.messages
recipients = stored.recipients
history = stored.history
devices = stored.devices

PENDING = ProcessingState.PENDING.value
CANCELLING = ProcessingState.CANCELLING.value
ACTIVE = (PENDING, CANCELLING)
PULL_LIMIT = 100


#: SMSGW_ONLINE_WINDOW_SECONDS's default (config.py).
ONLINE_WINDOW = timedelta(seconds=ONLINE_WINDOW_SECONDS)


@dataclass(frozen=True)
class Phone:
    """The puller: its id, its owner, and its SIM slots (None when unknown); whether it is
    a carrier link, and then how recently a phone must have been heard from to count as
    online (for the account's routing rule: routing/rules.py), and whether it is a link
    for all accounts."""

    device_id: str
    user_id: int
    sim_numbers: frozenset[int] | None
    link: bool = False
    online_window: timedelta = ONLINE_WINDOW
    #: A carrier link for all accounts: it claims from every account's queue, each under
    #: that account's rule, as if it were that account's (`user_id` holds it).
    every_account: bool = False

    @property
    def claimer(self) -> Claimer:
        return Claimer(self.user_id, self.link, self.online_window)


# The phone's hot paths (pull, state reports), for `Database.write_unit` and `read_unit`: one
# unit of work on a plain DB-API connection, statements in standard SQL (db/engine.py).
_at = ColumnWriter(messages.c.created_at)  # every timestamp column has this type
_RECORD_COLUMNS = stored.RECORD_COLUMNS
#: What a claim within a budget reads of each candidate: its cost, and its pull order's keys.
_COSTED = "id, parts, priority, schedule_at, created_at"
_record = stored.record_of
#: The order of a pull: due first, then by priority, then newest (lifo) or oldest first.
_ORDER = {
    True: "schedule_at ASC NULLS FIRST, priority DESC, created_at DESC, id DESC",
    False: "schedule_at ASC NULLS FIRST, priority DESC, created_at ASC, id ASC",
}


async def _records(
    conn: UnitConnection, where: str, params: list[Any], newest_first: bool
) -> list[MessageRecord]:
    """Messages matching `where`, in pull order, at most PULL_LIMIT, with their recipients."""
    query = (
        f"SELECT {_RECORD_COLUMNS} FROM messages WHERE {where}"  # noqa: S608
        f" ORDER BY {_ORDER[newest_first]} LIMIT {PULL_LIMIT}"
    )
    records = [_record(conn, row) for row in await conn.execute(query, params)]
    if records:
        by_pk = {record.pk: record for record in records}
        numbers = (
            "SELECT message_id, phone_number, state, error FROM recipients"  # noqa: S608
            f" WHERE message_id IN ({marks(len(by_pk))}) ORDER BY message_id, position"
        )
        for key, number, state, error in await conn.execute(numbers, list(by_pk)):
            by_pk[key].recipients.append(RecipientRecord(number, state, error))
    return records


async def held(
    conn: UnitConnection, phone: Phone, newest_first: bool, now: datetime
) -> list[MessageRecord]:
    """Messages this phone has (pinned or claimed) that it has not reported on yet.

    A pinned message scheduled for later stays on the server until its time (so cancelling it
    before then is immediate), unless the phone already has it.
    """
    where = (
        "device_id = ? AND state IN (?, ?)"
        " AND (claimed_at IS NOT NULL OR schedule_at IS NULL OR schedule_at <= ?)"
    )
    return await _records(conn, where, [phone.device_id, *ACTIVE, _at(conn, now)], newest_first)


async def released_from(conn: UnitConnection, phone: Phone) -> list[MessageRecord]:
    """Messages taken back from this phone that it must drop, until it answers about them
    (of every account, for a link for all accounts)."""
    where = "released_from = ? AND (device_id IS NULL OR device_id != ?)"
    params: list[Any] = [phone.device_id, phone.device_id]
    if not phone.every_account:
        where += " AND user_id = ?"
        params.append(phone.user_id)
    return await _records(conn, where, params, newest_first=True)


def _claimable(
    conn: UnitConnection, phone: Phone, now: datetime, rule: Rule
) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) of the queued messages this phone may take
    under the account's routing `rule`."""
    stamp = _at(conn, now)
    where = (
        f"user_id = ? AND {QUEUED}"
        " AND (valid_until IS NULL OR valid_until > ?)"
        " AND (schedule_at IS NULL OR schedule_at <= ?)"
        " AND (released_from IS NULL OR released_from != ?)"
    )
    params: list[Any] = [phone.user_id, stamp, stamp, phone.device_id]
    if phone.sim_numbers is not None:
        sims = sorted(phone.sim_numbers)
        where += f" AND (sim_number IS NULL OR sim_number IN ({marks(len(sims))}))"
        params += sims
    routed = rules.condition(conn, rule, phone.claimer, now)
    if routed is not None:
        where += f" AND {routed[0]}"
        params += routed[1]
    return where, params


async def claim(
    conn: UnitConnection,
    phone: Phone,
    count: int,
    now: datetime,
    newest_first: bool,
    room: int = UNBOUNDED,
    first_max: int = UNBOUNDED,
    rule: Rule = rules.SHARED,
) -> list[tuple[int, int]]:
    """Claim up to `count` queued messages for this phone, within its budget: `room` parts,
    and a first message of at most `first_max` parts (routing/budgets.py `fits`; expedited
    ones whatever is left), of those the account's routing `rule` gives it. Returns (key,
    parts) of those it won.

    One statement. On SQLite the write transaction (`BEGIN IMMEDIATE`) keeps every other
    writer out between the choice and the update; on PostgreSQL the choice locks its rows
    and passes over those another node's claim holds (`row_lock`; a row another claim
    changed since this statement began is checked again against the WHERE before it is
    locked), so no message is ever claimed twice; and it is made once (`among`), so never
    more than `count`. Within a budget, the choice keeps the candidates, in pull order,
    whose running cost fits (a window function over them)."""
    where, params = _claimable(conn, phone, now, rule)
    order = _ORDER[newest_first]
    lock = row_lock(conn, skip_locked=True)
    chosen = f"SELECT id FROM messages WHERE {where} ORDER BY {order} LIMIT ?{lock}"  # noqa: S608
    params.append(count)
    if room < UNBOUNDED:
        candidates = chosen.replace("SELECT id ", f"SELECT {_COSTED} ", 1)
        chosen = (
            "SELECT id FROM (SELECT id, parts, priority,"  # noqa: S608
            f" sum(parts) OVER (ORDER BY {order} ROWS UNBOUNDED PRECEDING) AS running"
            f" FROM ({candidates}) AS candidate) AS costed"
            " WHERE priority >= ? OR running <= ? OR (running = parts AND parts <= ?)"
        )
        params += [EXPEDITED, room, first_max]
    query = (
        "UPDATE messages SET device_id = ?, claimed_at = ?, updated_at = ?"  # noqa: S608
        f" WHERE {among(conn, 'id', chosen)} RETURNING id, parts"
    )
    stamp = _at(conn, now)
    rows = (await conn.execute(query, [phone.device_id, stamp, stamp, *params])).fetchall()
    return [(row[0], row[1]) for row in rows]


#: The accounts with queued messages, in order of their ids from a starting point: each
#: step finds the next in the queue's index (a skip scan), so the cost is one index probe
#: per account, however long the queue.
_OWNERS = (
    "WITH RECURSIVE owner(id) AS ("  # noqa: S608
    f" SELECT (SELECT min(user_id) FROM messages WHERE {QUEUED} AND user_id >= ?)"
    f" UNION ALL SELECT (SELECT min(user_id) FROM messages WHERE {QUEUED} AND user_id > owner.id)"
    " FROM owner WHERE owner.id IS NOT NULL)"
    " SELECT id FROM owner WHERE id IS NOT NULL LIMIT ?"
)


async def queued_owners(conn: UnitConnection, start: int, at_most: int) -> list[int]:
    """Up to `at_most` accounts with queued messages (due or not): those from account
    `start` on, then from the first (each once)."""
    found = [row[0] for row in await conn.execute(_OWNERS, (start, at_most))]
    if len(found) < at_most and start > 0:
        found += [
            owner
            for (owner,) in await conn.execute(_OWNERS, (0, at_most - len(found)))
            if owner < start
        ]
    return found


async def lock_phone(conn: UnitConnection, device_id: str) -> None:
    """Keep this phone's other pulls (on other nodes) waiting until this transaction ends,
    so that what it holds is counted once against its cap (nothing to do on SQLite).

    `FOR NO KEY UPDATE`, not `FOR UPDATE`: a message stored for this phone (pinned to it)
    checks its foreign key with a KEY SHARE lock on the phone's row, which FOR UPDATE would
    make wait; two nodes' batches, each with one phone's pull and a send pinned to the
    other's, then deadlocked."""
    if row_lock(conn):
        query = "SELECT id FROM devices WHERE id = ? FOR NO KEY UPDATE"
        await conn.execute(query, (device_id,))


async def mark_taken(conn: UnitConnection, keys: list[int], now: datetime) -> None:
    """Record the first pull of pinned messages (a cancel then needs the phone's answer)."""
    if keys:
        query = (
            "UPDATE messages SET claimed_at = ?"  # noqa: S608
            f" WHERE id IN ({marks(len(keys))}) AND claimed_at IS NULL"
        )
        await conn.execute(query, [_at(conn, now), *keys])


#: Whether a phone's budget is spent: a window with a limit (its own, else the server's: the
#: parameters) whose count for the current minute or day (parameters) has reached it.
_SPENT = (
    "EXISTS (SELECT 1 FROM devices d JOIN phone_usage u ON u.device_id = d.id WHERE d.id = ?"
    " AND ((coalesce(d.parts_per_minute, ?) > 0 AND u.minute = ?"
    " AND u.minute_parts >= coalesce(d.parts_per_minute, ?))"
    " OR (coalesce(d.parts_per_day, ?) > 0 AND u.day = ?"
    " AND u.day_parts >= coalesce(d.parts_per_day, ?))))"
)


async def has_claimable(
    conn: UnitConnection, phone: Phone, now: datetime, limits: Limits | None = None
) -> bool:
    """Whether a queued message waits that this phone may take; with `limits` (the
    server's), that it may take now: any while its budget has room, else an expedited one.
    Under the account's routing rule, read first."""
    rule = await rules.of_owner(conn, phone.user_id)
    where, params = _claimable(conn, phone, now, rule)
    if limits is not None:
        where += f" AND (priority >= {EXPEDITED} OR NOT {_SPENT})"
        minute, day = limits.per_minute, limits.per_day
        params += [phone.device_id, minute, minute_of(now), minute, day, day_of(now), day]
    # In the order of the queue's index, so that this is what it reads.
    query = f"SELECT id FROM messages WHERE {where} ORDER BY {_ORDER[True]} LIMIT 1"  # noqa: S608
    return (await conn.execute(query, params)).fetchone() is not None


@dataclass(frozen=True)
class PullState:
    """What a pull reads of its phone once it holds the phone's lock: how many messages it
    holds unreported, its own limits (None: the server's), its `phone_usage` row (minute,
    parts, day, parts; None without one), the parts of its pinned messages that are
    due and that it has not taken yet, and its owner's routing rule."""

    in_flight: int
    per_minute: int | None
    per_day: int | None
    usage: tuple[int | None, int | None, int | None, int | None]
    pinned_due: int
    rule: Rule = rules.SHARED


async def pull_state(conn: UnitConnection, device_id: str, now: datetime) -> PullState | None:
    """The phone's `PullState` (None: no such phone), in one statement."""
    query = (
        "SELECT (SELECT count(*) FROM messages WHERE device_id = ? AND state = ?),"  # noqa: S608
        " (SELECT coalesce(sum(parts), 0) FROM (SELECT parts FROM messages"
        f" WHERE device_id = ? AND {UNTAKEN} AND (schedule_at IS NULL OR schedule_at <= ?)"
        f" ORDER BY schedule_at LIMIT {PULL_LIMIT}) AS pinned),"  # a pull hands at most these
        " d.parts_per_minute, d.parts_per_day, u.minute, u.minute_parts, u.day, u.day_parts,"
        " r.mode, r.prefixes, r.failover_after"
        " FROM devices d LEFT JOIN phone_usage u ON u.device_id = d.id"
        " LEFT JOIN routing_rules r ON r.user_id = d.user_id WHERE d.id = ?"
    )
    params = (device_id, PENDING, device_id, _at(conn, now), device_id)
    row = (await conn.execute(query, params)).fetchone()
    if row is None:
        return None
    usage = (row[4], row[5], row[6], row[7])
    return PullState(int(row[0]), row[2], row[3], usage, int(row[1]), rules.of_row(row[8:]))


async def save_usage(conn: UnitConnection, device_id: str, now: datetime, budget: Budget) -> None:
    """Store what the phone was handed in `now`'s minute and day (under the phone's lock)."""
    query = (
        "INSERT INTO phone_usage (device_id, minute, minute_parts, day, day_parts)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET"
        " minute = excluded.minute, minute_parts = excluded.minute_parts,"
        " day = excluded.day, day_parts = excluded.day_parts"
    )
    values = (device_id, minute_of(now), budget.minute_used, day_of(now), budget.day_used)
    await conn.execute(query, values)


async def queued_due(conn: UnitConnection, owner: int, at_most: int, now: datetime) -> int:
    """How many of the owner's queued messages are due and unexpired and for its phones
    (by its routing rule), counted up to `at_most` (in the queue's index, so a long queue
    costs no more than `at_most`)."""
    stamp = _at(conn, now)
    where = (
        f"user_id = ? AND {QUEUED}"
        " AND (valid_until IS NULL OR valid_until > ?)"
        " AND (schedule_at IS NULL OR schedule_at <= ?)"
    )
    params: list[Any] = [owner, stamp, stamp]
    phones = Claimer(owner, link=False, online_window=ONLINE_WINDOW)
    routed = rules.condition(conn, await rules.of_owner(conn, owner), phones, now)
    if routed is not None:
        where += f" AND {routed[0]}"
        params += routed[1]
    query = (
        f"SELECT count(*) FROM (SELECT id FROM messages WHERE {where}"  # noqa: S608
        f" ORDER BY {_ORDER[True]} LIMIT ?) AS due"  # the queue's own index, which it ends in
    )
    return int((await conn.execute(query, [*params, at_most])).fetchone()[0])


async def has_due_untaken(conn: UnitConnection, device_id: str, now: datetime) -> bool:
    """Whether a message pinned to this phone is due and the phone has not taken it yet."""
    query = (
        f"SELECT id FROM messages WHERE device_id = ? AND {UNTAKEN}"  # noqa: S608
        " AND (schedule_at IS NULL OR schedule_at <= ?)"
        " ORDER BY schedule_at LIMIT 1"  # in ix_messages_untaken's order: it is read
    )
    return (await conn.execute(query, [device_id, _at(conn, now)])).fetchone() is not None


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
        .where(recipients.c.message_id.in_(keys), open_recipient())
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
            .where(recipients.c.message_id.in_(cancel_keys), open_recipient())
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


@dataclass(slots=True)  # not frozen: made per message, and a frozen __init__ costs 4x
class StoredRecipient:
    id: int
    phone_number: str
    state: str
    error: str | None


async def reported_message(
    conn: UnitConnection, phone: Phone, ext_id: str
) -> tuple[int, str] | None:
    """(key, state) of the owner's message `ext_id`, only if this phone holds it; the row
    stays locked to this transaction (`row_lock`: reports applied at once on two nodes take
    turns)."""
    query = (
        "SELECT id, state FROM messages"  # noqa: S608
        f" WHERE user_id = ? AND ext_id = ? AND device_id = ?{row_lock(conn)}"
    )
    row = (await conn.execute(query, (phone.user_id, ext_id, phone.device_id))).fetchone()
    return None if row is None else (row[0], row[1])


async def acknowledge_release(conn: UnitConnection, phone: Phone, ext_id: str) -> None:
    """The phone answered about a message taken back from it: stop listing it as Cancelling."""
    query = (
        "UPDATE messages SET released_from = NULL"
        " WHERE user_id = ? AND ext_id = ? AND released_from = ?"
    )
    await conn.execute(query, (phone.user_id, ext_id, phone.device_id))


async def recipients_of(conn: UnitConnection, key: int) -> list[StoredRecipient]:
    query = (
        "SELECT id, phone_number, state, error FROM recipients"
        " WHERE message_id = ? ORDER BY position"
    )
    return [StoredRecipient(*row) for row in await conn.execute(query, (key,))]


async def set_recipient(
    conn: UnitConnection, recipient_id: int, state: str, error: str | None
) -> None:
    await conn.execute(
        "UPDATE recipients SET state = ?, error = ? WHERE id = ?", (state, error, recipient_id)
    )


async def set_message_state(conn: UnitConnection, key: int, state: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE messages SET state = ?, updated_at = ? WHERE id = ?", (state, _at(conn, now), key)
    )


async def history_states(conn: UnitConnection, key: int) -> set[str]:
    """The states message `key` has a history entry for."""
    query = "SELECT state FROM message_states WHERE message_id = ?"
    return {row[0] for row in await conn.execute(query, (key,))}


async def add_history(conn: UnitConnection, key: int, entries: dict[str, datetime]) -> None:
    """Record `entries` (state -> when), none of which the message has recorded yet."""
    if entries:
        await conn.executemany(
            "INSERT INTO message_states (message_id, state, at) VALUES (?, ?, ?)",
            [(key, state, _at(conn, at)) for state, at in entries.items()],
        )


# The same reads and writes for a batch of reports (routing/service.py `_apply_many`).

IN_LIST = 500


def _chunks(values: list[Any]) -> list[list[Any]]:
    return [values[i : i + IN_LIST] for i in range(0, len(values), IN_LIST)]


async def reported_messages(
    conn: UnitConnection, phone: Phone, ext_ids: list[str]
) -> dict[str, tuple[int, str]]:
    """`reported_message` of each of `ext_ids`: ext_id -> (key, state), those this phone
    holds; their rows stay locked to this transaction."""
    found: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(ext_ids):
        # The sender is checked here rather than in the WHERE: with it there, SQLite may
        # pick the (user_id, device_id, created_at) index and read all the sender's messages.
        query = (
            "SELECT ext_id, id, state, device_id FROM messages"  # noqa: S608
            f" WHERE user_id = ? AND ext_id IN ({marks(len(chunk))}){row_lock(conn)}"
        )
        for ext_id, key, state, device_id in await conn.execute(query, (phone.user_id, *chunk)):
            if device_id == phone.device_id:
                found[ext_id] = (key, state)
    return found


async def recipients_of_many(
    conn: UnitConnection, keys: list[int]
) -> dict[int, list[StoredRecipient]]:
    """`recipients_of` of each message key."""
    found: dict[int, list[StoredRecipient]] = {key: [] for key in keys}
    for chunk in _chunks(keys):
        query = (
            "SELECT message_id, id, phone_number, state, error FROM recipients"  # noqa: S608
            f" WHERE message_id IN ({marks(len(chunk))}) ORDER BY message_id, position"
        )
        for key, *row in await conn.execute(query, chunk):
            found[key].append(StoredRecipient(*row))
    return found


async def history_states_many(conn: UnitConnection, keys: list[int]) -> dict[int, set[str]]:
    """`history_states` of each message key."""
    found: dict[int, set[str]] = {key: set() for key in keys}
    for chunk in _chunks(keys):
        query = (
            "SELECT message_id, state FROM message_states"  # noqa: S608
            f" WHERE message_id IN ({marks(len(chunk))})"
        )
        for key, state in await conn.execute(query, chunk):
            found[key].add(state)
    return found


async def set_recipients(conn: UnitConnection, rows: list[tuple[str, str | None, int]]) -> None:
    """(state, error, recipient id) each."""
    if rows:
        await conn.executemany("UPDATE recipients SET state = ?, error = ? WHERE id = ?", rows)


async def set_message_states(
    conn: UnitConnection, rows: list[tuple[int, str]], now: datetime
) -> None:
    """(key, state) each, updated at `now`."""
    if rows:
        stamp = _at(conn, now)
        await conn.executemany(
            "UPDATE messages SET state = ?, updated_at = ? WHERE id = ?",
            [(state, stamp, key) for key, state in rows],
        )


async def add_histories(conn: UnitConnection, rows: list[tuple[int, str, datetime]]) -> None:
    """(key, state, when) each, none recorded yet."""
    if rows:
        await conn.executemany(
            "INSERT INTO message_states (message_id, state, at) VALUES (?, ?, ?)",
            [(key, state, _at(conn, at)) for key, state, at in rows],
        )
