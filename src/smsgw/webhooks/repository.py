"""Queries on webhooks, signing keys, the outbox and the delivery log. Scoped to the owner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.base import table_of
from smsgw.db.engine import ColumnReader, ColumnWriter, RowInsert, UnitConnection
from smsgw.devices.models import Device
from smsgw.messages.models import Message, Recipient
from smsgw.webhooks.models import Attempt, Delivery, SigningKey, Webhook, WebhookEvent

webhooks = table_of(Webhook)
keys = table_of(SigningKey)
events = table_of(WebhookEvent)
deliveries = table_of(Delivery)
attempts = table_of(Attempt)
devices = table_of(Device)
messages = table_of(Message)
recipients = table_of(Recipient)

PENDING, DELIVERED, FAILED, DISABLED = "pending", "delivered", "failed", "disabled"


@dataclass(frozen=True)
class WebhookRecord:
    pk: int
    ext_id: str
    device_id: str | None
    url: str
    event: str
    disabled_at: datetime | None
    disabled_reason: str | None


@dataclass(frozen=True)
class Due:
    """A delivery whose time has come, with what its request needs."""

    pk: int
    attempts: int
    next_at: datetime
    created_at: datetime
    webhook_pk: int
    webhook_id: str
    url: str
    user_id: int
    event_id: str
    event: str
    device_id: str | None
    payload: dict[str, Any]


WEBHOOK_COLUMNS = (
    webhooks.c.id.label("pk"), webhooks.c.ext_id, webhooks.c.device_id, webhooks.c.url,
    webhooks.c.event, webhooks.c.disabled_at, webhooks.c.disabled_reason,
)  # fmt: skip


async def list_for(conn: AsyncConnection, user_id: int) -> list[WebhookRecord]:
    query = select(*WEBHOOK_COLUMNS).where(webhooks.c.user_id == user_id).order_by(webhooks.c.id)
    return [WebhookRecord(**row._asdict()) for row in await conn.execute(query)]


async def find(conn: AsyncConnection, user_id: int, ext_id: str) -> WebhookRecord | None:
    query = select(*WEBHOOK_COLUMNS).where(
        webhooks.c.user_id == user_id, webhooks.c.ext_id == ext_id
    )
    row = (await conn.execute(query)).first()
    return None if row is None else WebhookRecord(**row._asdict())


async def upsert(conn: AsyncConnection, user_id: int, values: dict[str, Any]) -> None:
    """Insert or replace (re-enabling it) the webhook `values["ext_id"]` of `user_id`."""
    changed = (
        await conn.execute(
            update(webhooks)
            .where(webhooks.c.user_id == user_id, webhooks.c.ext_id == values["ext_id"])
            .values(**values, disabled_at=None, disabled_reason=None)
        )
    ).rowcount
    if not changed:
        await conn.execute(
            insert(webhooks).values(**values, user_id=user_id, created_at=values["updated_at"])
        )


async def remove(conn: AsyncConnection, user_id: int, ext_id: str) -> bool:
    query = delete(webhooks).where(webhooks.c.user_id == user_id, webhooks.c.ext_id == ext_id)
    return bool((await conn.execute(query)).rowcount)


async def device_owned(conn: AsyncConnection, user_id: int, device_id: str) -> bool:
    query = select(devices.c.id).where(devices.c.id == device_id, devices.c.user_id == user_id)
    return (await conn.execute(query)).first() is not None


_SECRET_SOURCE = f"SELECT user_id, token_hash FROM {devices.name} WHERE id = ?"  # noqa: S608


async def device_secret_source(conn: UnitConnection, device_id: str) -> tuple[int, str] | None:
    """(owner, token hash) of a phone, from which its hook secret is derived."""
    row = (await conn.execute(_SECRET_SOURCE, (device_id,))).fetchone()
    return None if row is None else (row[0], row[1])


async def for_phone(conn: AsyncConnection, user_id: int, device_id: str) -> list[WebhookRecord]:
    """Enabled webhooks of `user_id` bound to this phone or to every phone."""
    query = select(*WEBHOOK_COLUMNS).where(
        webhooks.c.user_id == user_id,
        webhooks.c.disabled_at.is_(None),
        or_(webhooks.c.device_id.is_(None), webhooks.c.device_id == device_id),
    )
    return [WebhookRecord(**row._asdict()) for row in await conn.execute(query)]


async def matching(
    conn: AsyncConnection, user_id: int, device_id: str | None, event: str
) -> list[int]:
    """Enabled webhooks of `user_id` for `event` that cover `device_id`."""
    scope: ColumnElement[bool] = webhooks.c.device_id.is_(None)
    if device_id is not None:
        scope = or_(scope, webhooks.c.device_id == device_id)
    query = select(webhooks.c.id).where(
        webhooks.c.user_id == user_id,
        webhooks.c.event == event,
        webhooks.c.disabled_at.is_(None),
        scope,
    )
    return list((await conn.execute(query)).scalars())


_KEY = f"SELECT key FROM {keys.name} WHERE user_id = ?"  # noqa: S608
_KEY_GONE = f"DELETE FROM {keys.name} WHERE user_id = ?"  # noqa: S608
_key_insert = RowInsert(keys)


async def signing_key_unit(conn: UnitConnection, user_id: int) -> str | None:
    row = (await conn.execute(_KEY, (user_id,))).fetchone()
    return None if row is None else str(row[0])


async def set_signing_key_unit(conn: UnitConnection, user_id: int, key: str, now: datetime) -> None:
    """Replace `user_id`'s key (a rotation: in a `write()` block, which on PostgreSQL no
    other node's write runs beside)."""
    await conn.execute(_KEY_GONE, (user_id,))
    await _key_insert.many(conn, [{"user_id": user_id, "key": key, "created_at": now}])


_KEY_IF_NONE = (
    f"INSERT INTO {keys.name} (user_id, key, created_at) VALUES (?, ?, ?)"  # noqa: S608
    " ON CONFLICT (user_id) DO NOTHING"
)
_key_at = ColumnWriter(keys.c.created_at)


async def first_signing_key_unit(
    conn: UnitConnection, user_id: int, key: str, now: datetime
) -> str:
    """`user_id`'s key: `key`, stored, unless one is stored already (on PostgreSQL another
    node's take may store one at the same moment: the first committed is kept, the other
    waits for it and then reads it)."""
    await conn.execute(_KEY_IF_NONE, (user_id, key, _key_at(conn, now)))
    return await signing_key_unit(conn, user_id) or key


async def event_exists(conn: AsyncConnection, user_id: int, dedupe_key: str) -> bool:
    query = select(events.c.id).where(
        events.c.user_id == user_id, events.c.dedupe_key == dedupe_key
    )
    return (await conn.execute(query)).first() is not None


async def add_event(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(insert(events).values(**values))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def _delivery_rows(
    event_pk: int, webhook_pks: list[int], now: datetime, due: datetime
) -> list[dict[str, Any]]:
    return [
        {"event_pk": event_pk, "webhook_pk": pk, "state": PENDING, "attempts": 0,
         "next_at": due, "created_at": now, "updated_at": now}
        for pk in webhook_pks
    ]  # fmt: skip


async def add_deliveries(
    conn: AsyncConnection, event_pk: int, webhook_pks: list[int], now: datetime, due: datetime
) -> None:
    await conn.execute(insert(deliveries), _delivery_rows(event_pk, webhook_pks, now, due))


# The same writes on a plain DB-API connection, for the phones' state reports
# (`Database.write_unit`, webhooks/outbox.record_unit).
_event_insert = RowInsert(events)
_delivery_insert = RowInsert(deliveries)


async def matching_unit(
    conn: UnitConnection, user_id: int, device_id: str | None, event: str
) -> list[int]:
    """`matching` on a plain connection."""
    query = (
        "SELECT id FROM webhooks WHERE user_id = ? AND event = ? AND disabled_at IS NULL"
        " AND (device_id IS NULL OR device_id = ?)"
    )
    return [row[0] for row in await conn.execute(query, (user_id, event, device_id))]


async def event_exists_unit(conn: UnitConnection, user_id: int, dedupe_key: str) -> bool:
    query = "SELECT 1 FROM webhook_events WHERE user_id = ? AND dedupe_key = ?"
    return (await conn.execute(query, (user_id, dedupe_key))).fetchone() is not None


async def add_event_unit(conn: UnitConnection, values: dict[str, Any]) -> int:
    return await _event_insert.one(conn, values)


async def add_deliveries_unit(
    conn: UnitConnection, event_pk: int, webhook_pks: list[int], now: datetime, due: datetime
) -> None:
    await _delivery_insert.many(conn, _delivery_rows(event_pk, webhook_pks, now, due))


_UNATTEMPTED = (
    f"SELECT e.id, e.payload FROM {events.name} e WHERE e.user_id = ? AND e.dedupe_key = ?"  # noqa: S608
    f" AND EXISTS (SELECT 1 FROM {deliveries.name} d WHERE d.event_pk = e.id"
    " AND d.state = ? AND d.attempts = 0)"
)
_COMPLETE = f"UPDATE {events.name} SET payload = ? WHERE id = ?"  # noqa: S608
_DUE_NOW = (
    f"UPDATE {deliveries.name} SET next_at = ?, updated_at = ?"  # noqa: S608
    " WHERE event_pk = ? AND state = ? AND attempts = 0"
)
_write_payload = ColumnWriter(events.c.payload)
_MESSAGE_KNOWN = f"SELECT 1 FROM {messages.name} WHERE user_id = ? AND ext_id = ?"  # noqa: S608


async def unattempted_event_unit(
    conn: UnitConnection, user_id: int, dedupe_key: str
) -> tuple[int, dict[str, Any]] | None:
    """(pk, payload) of the event, when some delivery of it is pending and never attempted."""
    row = (await conn.execute(_UNATTEMPTED, (user_id, dedupe_key, PENDING))).fetchone()
    return None if row is None else (row[0], _read_payload(conn, row[1]))


async def complete_event_unit(
    conn: UnitConnection, event_pk: int, payload: dict[str, Any], now: datetime
) -> None:
    """Replace the payload of an event not yet attempted and make its deliveries due now
    (moving `next_at` also makes a worker's take of the old row fail: it reads again)."""
    await conn.execute(_COMPLETE, (_write_payload(conn, payload), event_pk))
    when = _at(conn, now)
    await conn.execute(_DUE_NOW, (when, when, event_pk, PENDING))


async def message_known_unit(conn: UnitConnection, user_id: int, ext_id: str) -> bool:
    """Whether `ext_id` is a message of `user_id` (phones' posts name messages by it)."""
    return (await conn.execute(_MESSAGE_KNOWN, (user_id, ext_id))).fetchone() is not None


_at = ColumnWriter(deliveries.c.next_at)  # every timestamp column has this type
_FINISH = (
    f"UPDATE {attempts.name} SET finished_at = ?, status_code = ?, duration_ms = ?, error = ?"  # noqa: S608
    " WHERE id = ?"
)
_SETTLE = f"UPDATE {deliveries.name} SET state = ?, next_at = ?, updated_at = ? WHERE id = ?"  # noqa: S608
_DISABLE = (
    f"UPDATE {webhooks.name} SET disabled_at = ?, disabled_reason = ?, updated_at = ?"  # noqa: S608
    " WHERE id = ?"
)
_DISABLE_PENDING = (
    f"UPDATE {deliveries.name} SET state = ?, updated_at = ?"  # noqa: S608
    " WHERE webhook_pk = ? AND state = ?"
)


_DUE = (
    "SELECT d.id, d.attempts, d.next_at, d.created_at, w.id, w.ext_id, w.url, w.user_id,"  # noqa: S608
    " e.event_id, e.event, e.device_id, e.payload"
    f" FROM {deliveries.name} d JOIN {webhooks.name} w ON w.id = d.webhook_pk"
    f" JOIN {events.name} e ON e.id = d.event_pk"
    " WHERE d.state = ? AND d.next_at <= ? ORDER BY d.next_at, d.id LIMIT ?"
)
#: On PostgreSQL, rows another node is taking are passed over rather than waited for.
_DUE_TAKEN = _DUE + " FOR UPDATE OF d SKIP LOCKED"
_read_at = ColumnReader(deliveries.c.next_at)
_read_payload = ColumnReader(events.c.payload)
_TAKE = (
    f"UPDATE {deliveries.name} SET attempts = attempts + 1, next_at = ?, updated_at = ?"  # noqa: S608
    " WHERE id = ? AND state = ? AND next_at = ?"
)
_attempt_insert = RowInsert(attempts)


async def due_unit(
    conn: UnitConnection, now: datetime, limit: int, taking: bool = False
) -> list[Due]:
    """Pending deliveries due at `now`, oldest first (`taking`: to take them, in a write)."""
    sql = _DUE_TAKEN if taking and conn.dialect.name == "postgresql" else _DUE
    at, payload = _read_at.of(conn.dialect), _read_payload.of(conn.dialect)
    return [
        Due(pk, tries, at(next_at), at(created), webhook_pk, webhook_id, url, user_id,
            event_id, event, device_id, payload(body))
        for (pk, tries, next_at, created, webhook_pk, webhook_id, url, user_id, event_id, event,
             device_id, body) in await conn.execute(sql, (PENDING, _at(conn, now), limit))
    ]  # fmt: skip


async def take_unit(conn: UnitConnection, item: Due, lease_until: datetime, now: datetime) -> bool:
    """Claim `item` for one attempt (a conditional UPDATE: one taker wins)."""
    values = (_at(conn, lease_until), _at(conn, now), item.pk, PENDING, _at(conn, item.next_at))
    return (await conn.execute(_TAKE, values)).rowcount > 0


async def start_attempt_unit(conn: UnitConnection, item: Due, now: datetime) -> int:
    """The attempt's row, written before its request is sent."""
    values = {
        "webhook_pk": item.webhook_pk, "delivery_pk": item.pk, "event_id": item.event_id,
        "event": item.event, "started_at": now,
    }  # fmt: skip
    return await _attempt_insert.one(conn, values)


async def outcome_unit(
    conn: UnitConnection,
    attempt_pk: int,
    finished: tuple[datetime, int | None, int | None, str | None],
    delivery_pk: int,
    state: str,
    next_at: datetime,
) -> None:
    """An attempt's outcome (finished at, status code, duration in ms, error) and its
    delivery's new state."""
    at, status, duration_ms, error = finished
    await conn.execute(_FINISH, (_at(conn, at), status, duration_ms, error, attempt_pk))
    await conn.execute(_SETTLE, (state, _at(conn, next_at), _at(conn, at), delivery_pk))


async def disable_unit(conn: UnitConnection, webhook_pk: int, reason: str, now: datetime) -> None:
    """Stop a webhook: no further deliveries until it is registered again."""
    when = _at(conn, now)
    await conn.execute(_DISABLE, (when, reason[:256], when, webhook_pk))
    await conn.execute(_DISABLE_PENDING, (DISABLED, when, webhook_pk, PENDING))


async def release(
    conn: AsyncConnection,
    delivery_pk: int,
    lease_until: datetime,
    attempt_pk: int,
    now: datetime,
    error: str,
) -> bool:
    """Give back a delivery taken until `lease_until` whose request was cut off: due at
    once, its attempt finished with `error`. Only while the delivery still holds that lease
    (an outcome written meanwhile is left as it is); whether it did."""
    query = (
        update(deliveries)
        .where(
            deliveries.c.id == delivery_pk,
            deliveries.c.state == PENDING,
            deliveries.c.next_at == lease_until,
        )
        .values(next_at=now, updated_at=now)
    )
    if not (await conn.execute(query)).rowcount:
        return False
    await conn.execute(
        update(attempts)
        .where(attempts.c.id == attempt_pk, attempts.c.finished_at.is_(None))
        .values(finished_at=now, error=error)
    )
    return True


async def attempts_of(conn: AsyncConnection, webhook_pk: int, limit: int) -> list[dict[str, Any]]:
    query = (
        select(attempts)
        .where(attempts.c.webhook_pk == webhook_pk)
        .order_by(attempts.c.started_at.desc(), attempts.c.id.desc())
        .limit(limit)
    )
    return [row._asdict() for row in await conn.execute(query)]


def _old(before: datetime, settled_before: datetime | None) -> ColumnElement[bool]:
    """Events created before `before`, or before `settled_before` with no delivery still
    pending (one being sent is pending too)."""
    old = events.c.created_at < before
    if settled_before is None:
        return old
    pending = select(deliveries.c.id).where(
        deliveries.c.event_pk == events.c.id, deliveries.c.state == PENDING
    )
    return or_(old, and_(events.c.created_at < settled_before, ~pending.exists()))


async def any_old(conn: AsyncConnection, before: datetime, settled_before: datetime | None) -> bool:
    """Whether `delete_old` would forget any event."""
    query = select(events.c.id).where(_old(before, settled_before)).limit(1)
    return (await conn.execute(query)).first() is not None


async def delete_old(
    conn: AsyncConnection, before: datetime, settled_before: datetime | None, batch: int
) -> int:
    """Forget up to `batch` events (`_old`) with their deliveries and delivery log; how many
    events went."""
    query = select(events.c.id).where(_old(before, settled_before)).limit(batch)
    chosen = [int(row[0]) for row in await conn.execute(query)]
    if not chosen:
        return 0
    theirs = select(deliveries.c.id).where(deliveries.c.event_pk.in_(chosen))
    await conn.execute(delete(attempts).where(attempts.c.delivery_pk.in_(theirs)))
    await conn.execute(delete(deliveries).where(deliveries.c.event_pk.in_(chosen)))
    await conn.execute(delete(events).where(events.c.id.in_(chosen)))
    return len(chosen)


async def pending_count(conn: AsyncConnection) -> int:
    query = select(func.count()).select_from(deliveries).where(deliveries.c.state == PENDING)
    return int((await conn.execute(query)).scalar_one())


async def recipients_of(
    conn: AsyncConnection, message_pks: list[int], state: str
) -> list[tuple[int, str, str | None, str]]:
    """(owner, message id, phone, phone number) of every recipient of these messages that
    is in `state`."""
    query = (
        select(
            messages.c.user_id, messages.c.ext_id, messages.c.device_id, recipients.c.phone_number
        )
        .join(recipients, recipients.c.message_id == messages.c.id)
        .where(messages.c.id.in_(message_pks), recipients.c.state == state)
        .order_by(messages.c.id, recipients.c.position)
    )
    return [(r.user_id, r.ext_id, r.device_id, r.phone_number) for r in await conn.execute(query)]
