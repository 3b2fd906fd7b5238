"""Message use cases: send, read, list, cancel. One function per use case, every entry point."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from smsgw.accounts import service as accounts
from smsgw.db.engine import (
    Database,
    DriverUnit,
    UnitConnection,
    delete_in_batches,
    delete_older,
    is_integrity_error,
)
from smsgw.domain import clock, ids
from smsgw.domain.errors import Conflict, InvalidInput, NotFound
from smsgw.domain.phones import match_key, normalize_all
from smsgw.domain.states import ProcessingState
from smsgw.events.user_feed import notify
from smsgw.logs import service as logs
from smsgw.messages import repository
from smsgw.messages.repository import ListFilter, MessageRecord, RecipientRecord
from smsgw.optouts.service import OPTED_OUT
from smsgw.routing.budgets import message_parts
from smsgw.webhooks import outbox

DUPLICATE_ID = "message with the same ID already exists"


@dataclass(frozen=True)
class SendCommand:
    """What a caller asks to send; field rules (types, ranges) are checked by the caller."""

    phone_numbers: list[str]
    text: str | None = None
    data: str | None = None
    port: int | None = None
    ext_id: str | None = None
    device_id: str | None = None
    is_encrypted: bool = False
    sim_number: int | None = None
    with_delivery_report: bool = True
    priority: int = 0
    ttl: int | None = None
    valid_until: datetime | None = None
    schedule_at: datetime | None = None
    skip_phone_validation: bool = False
    device_active_within_hours: int = 0


def _expiry(command: SendCommand, now: datetime) -> tuple[datetime | None, datetime | None]:
    """validUntil (from ttl or as given) and scheduleAt, checked against the clock."""
    valid_until = command.valid_until
    if command.ttl is not None:
        valid_until = now + timedelta(seconds=command.ttl)
    elif valid_until is not None and valid_until <= now:
        raise InvalidInput("validUntil must be in the future")
    schedule_at = command.schedule_at
    if schedule_at is not None:
        if schedule_at <= now:
            raise InvalidInput("scheduleAt must be in the future")
        if valid_until is not None and schedule_at > valid_until:
            raise InvalidInput("scheduleAt must be less than or equal to validUntil")
    return valid_until, schedule_at


async def _check_device(conn: UnitConnection, user_id: int, command: SendCommand) -> None:
    """A pinned phone must be the caller's; `deviceActiveWithin` needs a phone seen lately."""
    if command.device_id is None and command.device_active_within_hours == 0:
        return
    seen = await repository.devices_last_seen(conn, user_id, command.device_id)
    if command.device_id is not None and not seen:
        raise InvalidInput(f"deviceId: you have no device with id {command.device_id!r}")
    hours = command.device_active_within_hours
    if hours and not any(last >= clock.now() - timedelta(hours=hours) for last in seen):
        which = "that device was" if command.device_id else "none of your devices was"
        raise InvalidInput(f"deviceActiveWithin: {which} active within the last {hours} hours")


def _match_keys(command: SendCommand, numbers: list[str], default_region: str | None) -> list[str]:
    """The recipients' numbers as the opt-out list holds them; none for encrypted numbers,
    which smsgw cannot read (they are not checked)."""
    if command.is_encrypted:
        return []
    if command.skip_phone_validation:
        return [match_key(number, default_region) for number in numbers]
    return numbers  # normalised: E.164


async def _fail_opted_out(
    conn: UnitConnection, user_id: int, ext_id: str, pk: int, numbers: list[str],
    positions: list[int], now: datetime, text: str | None,
) -> None:  # fmt: skip
    """Fail the recipients on the opt-out list (and the message, when they are all of its
    recipients), in the unit of work that stores it: `sms:failed` for each, as for any
    failure smsgw makes itself."""
    whole = len(positions) == len(numbers)
    await repository.fail_recipients(conn, pk, positions, OPTED_OUT, now, whole)
    if not whole:  # what it costs a phone's budget: the recipients it is sent to
        await repository.set_parts(conn, pk, message_parts(text, len(numbers) - len(positions)))
    failed = ProcessingState.FAILED.value
    for i in positions:
        await outbox.record_state_unit(
            conn, user_id, None, ext_id, numbers[i], failed, OPTED_OUT, now
        )
    if whole:
        await logs.message_state_unit(conn, user_id, ext_id, failed, OPTED_OUT)


async def send(
    db: Database,
    default_region: str | None,
    user_id: int,
    command: SendCommand,
    confirm: accounts.Recalled | None = None,
) -> MessageRecord:
    """Validate and durably queue a message; when this returns, it is committed. Recipients
    on the owner's opt-out list are stored Failed ("recipient opted out"), and so is the
    message when that is all of them: no phone ever gets it. With `confirm` (Basic
    credentials taken from the cache unread), the message is stored only if they still hold
    (in the same transaction; StaleCredentials otherwise, and nothing is stored)."""
    validate = not (command.is_encrypted or command.skip_phone_validation)
    numbers = normalize_all(command.phone_numbers, default_region, validate)
    keys = _match_keys(command, numbers, default_region)
    now = clock.now()
    valid_until, schedule_at = _expiry(command, now)
    ext_id = command.ext_id or ids.message_id()
    state = ProcessingState.PENDING.value
    values = {
        "ext_id": ext_id,
        "user_id": user_id,
        "device_id": command.device_id,
        "pinned": command.device_id is not None,
        "state": state,
        "text": command.text,
        "data": command.data,
        "port": command.port,
        "is_encrypted": command.is_encrypted,
        "sim_number": command.sim_number,
        "with_delivery_report": command.with_delivery_report,
        "priority": command.priority,
        "parts": message_parts(command.text, len(numbers)),
        "valid_until": valid_until,
        "schedule_at": schedule_at,
        "created_at": now,
        "updated_at": now,
    }

    holds = None if confirm is None else accounts.confirming(confirm)

    async def store(conn: UnitConnection) -> tuple[int, list[int]]:
        await _check_device(conn, user_id, command)
        if command.ext_id is not None and await repository.ext_id_in_use(conn, user_id, ext_id):
            raise Conflict(DUPLICATE_ID)
        pk, listed, current = await repository.store_checked(
            conn, values, numbers, now, keys, holds
        )
        if confirm is not None:  # raising undoes what this unit stored
            accounts.confirm(confirm, current)
        if listed:
            await _fail_opted_out(conn, user_id, ext_id, pk, numbers, listed, now, command.text)
        return pk, listed

    try:
        # The hot path: one unit of work, committed with its neighbours (group commit). Of
        # what another send writes it reads only rows keyed by the message's id (the message,
        # its webhook events), which unique constraints guard: interleaved (db/engine.py).
        # A client's own id may come twice at once through two nodes: named, so that their
        # batches wait on each other in one order, not in a cycle (db/engine.py).
        named = [] if command.ext_id is None else [repository.message_lock(user_id, ext_id)]
        pk, listed = await db.write_unit(store, interleaved=True, locks=named)
    except Exception as exc:
        if is_integrity_error(exc):  # the same id sent at once through another process
            raise Conflict(DUPLICATE_ID) from None
        raise
    notify(db, user_id)  # the dashboard's live views, whoever sent it
    recipients = [RecipientRecord(n, state, None) for n in numbers]
    states = {state: now}
    for i in listed:
        recipients[i] = RecipientRecord(numbers[i], ProcessingState.FAILED.value, OPTED_OUT)
    if listed and len(listed) == len(numbers):
        state = ProcessingState.FAILED.value
        states[state] = now
    return MessageRecord(
        pk=pk,
        id=ext_id,
        device_id=command.device_id,
        state=state,
        text=command.text,
        data=command.data,
        port=command.port,
        is_encrypted=command.is_encrypted,
        is_hashed=False,
        sim_number=command.sim_number,
        with_delivery_report=command.with_delivery_report,
        priority=command.priority,
        valid_until=valid_until,
        schedule_at=schedule_at,
        created_at=now,
        claimed_at=None,
        recipients=recipients,
        states=states,
    )


async def get(db: Database, user_id: int, ext_id: str) -> MessageRecord:
    """One of the owner's messages; NotFound when absent or someone else's."""
    record = await db.read_unit(lambda conn: repository.read_by_ext_id(conn, user_id, ext_id))
    if record is None:
        raise NotFound("message not found")
    return record


async def list_page(
    db: Database, user_id: int, where: ListFilter
) -> tuple[list[MessageRecord], int, bool]:
    """A page of the owner's messages, the total count matching the filter, and whether
    more follow the page."""
    if repository.is_shallow(where):
        return await db.read_unit(lambda conn: repository.page(conn, user_id, where))
    async with db.read() as conn:  # rows to skip, or to count: off the event loop
        return await repository.page(DriverUnit(conn), user_id, where)


async def cancel(db: Database, user_id: int, ext_id: str) -> MessageRecord:
    """Cancel a Pending message: Cancelled at once if no phone has it yet, else Cancelling."""
    async with db.write() as conn:
        record = await repository.read_by_ext_id(DriverUnit(conn), user_id, ext_id)
        if record is None:
            raise NotFound("message not found")
        if record.state != ProcessingState.PENDING:
            raise Conflict(f"message is not pending (its state is {record.state})")
        taken = record.claimed_at is not None
        target = ProcessingState.CANCELLING if taken else ProcessingState.CANCELLED
        await repository.set_state(
            conn, record.pk, target.value, clock.now(), recipients_too=not taken
        )
        await logs.message_state(conn, user_id, ext_id, target.value, record.device_id)
        if not taken:  # no phone will report it: smsgw's own sms:cancelled events
            await outbox.record_server_state(conn, [record.pk], target.value, None, clock.now())
        updated = await repository.read_by_ext_id(DriverUnit(conn), user_id, ext_id)
    assert updated is not None
    notify(db, user_id)
    return updated


async def prune(db: Database, retention_days: int) -> int:
    """Delete the messages done (a final state, or Sent) for longer than `retention_days`,
    with their recipients and history, in small batches; how many went."""
    before = clock.now() - timedelta(days=retention_days)
    table = repository.messages
    return await delete_older(db, table.c.updated_at, before, table.c.state.in_(repository.DONE))


async def fold_counts(db: Database, batch: int = repository.FOLD_BATCH) -> int:
    """Fold the count changes the triggers recorded into the message counts, `batch` per
    write() (the write lock is never held long), until none are left; how many went."""
    return await delete_in_batches(db, repository.any_count_changes, repository.fold_counts, batch)
