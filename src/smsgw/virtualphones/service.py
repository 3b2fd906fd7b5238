"""Virtual phone use cases: add one, give it an incoming SMS, and drive it.

A virtual phone is a `devices` row like any phone's (`virtual` set), registered through the
same service. The driver (workers/virtual.py) works it through the services a real phone's
requests use: `routing.pull` claims its messages as `GET /message` does, `routing.report`
applies its state snapshots as `PATCH /message` does (webhooks, states and logs follow from
them alike), and an incoming SMS goes through `webhooks.hub.accept` as a phone's post of
`sms:received` does (inbox and webhooks). Only a driver holding a phone's lease drives it
(`lease`): on several processes or nodes one drives each phone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.config import Settings
from smsgw.db.engine import Database
from smsgw.devices import repository as device_rows
from smsgw.devices import service as devices
from smsgw.devices.errors import UnknownDevice
from smsgw.domain import clock, ids
from smsgw.domain.errors import InvalidInput
from smsgw.domain.states import ProcessingState
from smsgw.routing import service as routing
from smsgw.routing.budgets import NO_LIMITS, Limits
from smsgw.routing.repository import Phone
from smsgw.routing.service import Pulled, RecipientReport, StateReport
from smsgw.virtualphones import repository, script
from smsgw.virtualphones.errors import NotVirtual, VirtualPhonesOff
from smsgw.virtualphones.repository import Processed, VirtualRecord
from smsgw.virtualphones.script import Kind, Outcome
from smsgw.webhooks import hub

DEFAULT_NAME = "Virtual phone"
DEFAULT_DELAY = 2.0
MAX_DELAY = 86400.0
SENDER_LENGTH = 64
TEXT_LENGTH = 4096
TTL_EXPIRED = routing.TTL_EXPIRED


def check_enabled(settings: Settings) -> None:
    """VirtualPhonesOff unless virtual phones are on (config.py: `virtual_phones_enabled`)."""
    if not settings.virtual_phones_enabled:
        raise VirtualPhonesOff(settings)


def check_delay(delay: float) -> float:
    if not 0 <= delay <= MAX_DELAY:
        raise InvalidInput("delay: seconds from 0 to 86400")
    return delay


async def add(
    db: Database,
    settings: Settings,
    user_id: int,
    login: str,
    name: str | None = None,
    delay: float = DEFAULT_DELAY,
    outcome: str = "delivered",
) -> str:
    """Register a virtual phone on `user_id`'s account; its id. VirtualPhonesOff when they
    are off, InvalidInput for a bad name, delay or outcome script (virtualphones/script.py)."""
    check_enabled(settings)
    name = (name or "").strip() or DEFAULT_NAME
    if len(name) > 128:
        raise InvalidInput("name: at most 128 characters")
    delay, written = check_delay(delay), script.normal(outcome)

    async def settings_of(conn: AsyncConnection, device_id: str) -> None:
        await repository.add(conn, device_id, delay, written)

    registered = await devices.register(db, user_id, login, name, None, None, virtual=settings_of)
    return registered.device_id


async def of_user(db: Database, user_id: int) -> dict[str, VirtualRecord]:
    """The user's virtual phones by id."""
    async with db.read() as conn:
        return {v.device_id: v for v in await repository.of_user(conn, user_id)}


def _line(value: str, name: str, limit: int) -> str:
    value = value.strip()
    if not value:
        raise InvalidInput(f"{name}: required")
    if len(value) > limit:
        raise InvalidInput(f"{name}: at most {limit} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidInput(f"{name}: one line, no control characters")
    return value


async def inject(
    db: Database, settings: Settings, user_id: int, device_id: str, sender: str, text: str
) -> str:
    """An SMS from `sender` arrives at the user's virtual phone `device_id`: taken in as the
    phone's post of `sms:received` is (inbox, then the webhooks). Returns its messageId."""
    check_enabled(settings)
    sender = _line(sender, "from", SENDER_LENGTH)
    if not text.strip():
        raise InvalidInput("text: required")
    if len(text) > TEXT_LENGTH:
        raise InvalidInput(f"text: at most {TEXT_LENGTH} characters")
    async with db.read() as conn:
        device = await device_rows.by_id(conn, device_id)
    if device is None or device.user_id != user_id:
        raise UnknownDevice
    if not device.virtual:
        raise NotVirtual
    message_id = ids.random_token(21)
    payload = {
        "messageId": message_id, "message": text, "sender": sender, "phoneNumber": sender,
        "receivedAt": clock.format_timestamp(clock.now()),
    }  # fmt: skip
    body = {"id": ids.random_token(21), "webhookId": "smsgw-sms-received",
            "event": "sms:received", "deviceId": device_id, "payload": payload}  # fmt: skip
    # Always delivered (even in direct mode): no phone will post it to the webhooks itself.
    await hub.accept(db, user_id, device_id, body, deliver=True)
    return message_id


# The driver's side.


async def lease(db: Database, driver: str, seconds: float) -> list[VirtualRecord]:
    """The virtual phones `driver` drives for the next `seconds` (taking those no driver
    holds, or whose driver's lease ran out; renewing its own when half of it is gone)."""
    now = clock.now()
    async with db.read() as conn:  # look first: a write would hold up the API (db/engine.py)
        rows = await repository.leases(conn)
    renew = now + timedelta(seconds=seconds / 2)
    if not any(
        r.driver is None or r.lease_until is None or r.lease_until < now
        or (r.driver == driver and r.lease_until < renew)
        for r in rows
    ):  # fmt: skip
        return [r.phone for r in rows if r.driver == driver]
    async with db.write() as conn:
        return await repository.lease(conn, driver, now, now + timedelta(seconds=seconds))


async def release(db: Database, driver: str) -> None:
    async with db.write() as conn:
        await repository.release(conn, driver)


@dataclass(frozen=True)
class Drove:
    """What one round of a virtual phone did: the webhook events it put in the outbox,
    whether more work waits at once (its cap was full), and when its next message is due."""

    events: int = 0
    more: bool = False
    next_due: datetime | None = None


def _snapshot(
    ext_id: str, numbers: list[str], state: ProcessingState, error: str | None = None
) -> StateReport:
    """A snapshot as the app reports it: every recipient in `state`, reached now."""
    recipients = [RecipientReport(number, state, error) for number in numbers]
    return StateReport(ext_id, state, recipients, {state: clock.now()})


def _taken(item: Pulled) -> StateReport:
    """What the app reports on a pulled message: Processed (it sends it), or Cancelled for
    one it must drop (`Cancelling`)."""
    numbers = [r.phone_number for r in item.record.recipients]
    if item.state == ProcessingState.CANCELLING:
        return _snapshot(item.record.id, numbers, ProcessingState.CANCELLED)
    return _snapshot(item.record.id, numbers, ProcessingState.PROCESSED)


def _outcome(message: Processed, outcome: Outcome) -> list[StateReport]:
    """The reports that play `outcome` out for `message`: Failed; or Sent, then Delivered
    when the outcome and the message (`withDeliveryReport`) ask for it."""
    if message.valid_until is not None and message.valid_until < clock.now():
        return [_snapshot(message.ext_id, message.numbers, ProcessingState.FAILED, TTL_EXPIRED)]
    if outcome.kind == Kind.FAILED:
        failed = ProcessingState.FAILED
        return [_snapshot(message.ext_id, message.numbers, failed, outcome.reason)]
    reports = [_snapshot(message.ext_id, message.numbers, ProcessingState.SENT)]
    if outcome.kind == Kind.DELIVERED and message.with_delivery_report:
        reports.append(_snapshot(message.ext_id, message.numbers, ProcessingState.DELIVERED))
    return reports


async def _may_pull(db: Database, phone: Phone, limits: Limits) -> bool:
    """Whether a pull would hand the phone anything (a read: most rounds find nothing, and
    a pull is a write)."""
    async with db.read() as conn:
        if await repository.holds_work(conn, phone.device_id, phone.user_id, clock.now()):
            return True
    return await routing.has_work_for(db, phone, limits)


async def drive(db: Database, phone: VirtualRecord, cap: int, limits: Limits = NO_LIMITS) -> Drove:
    """One round of a virtual phone: take its new messages (Processed) and play out the
    outcome of those taken `delay_seconds` ago, through the phone's own services."""
    as_phone = Phone(phone.device_id, phone.user_id, None)
    events, more = 0, False
    if await _may_pull(db, as_phone, limits):
        pulled = await routing.pull(db, as_phone, True, cap, limits)
        if pulled.items:
            events += (await routing.report(db, as_phone, [_taken(i) for i in pulled.items])).events
        more = pulled.claimed >= cap
    async with db.read() as conn:
        taken = await repository.processed(conn, phone.device_id)
    cutoff = clock.now() - timedelta(seconds=phone.delay_seconds)
    due = [message for message in taken if message.processed_at <= cutoff]
    later = [m.processed_at + timedelta(seconds=phone.delay_seconds) for m in taken[len(due) :]]
    if due:
        events += await _play(db, as_phone, phone, due)
    return Drove(events, more, min(later, default=None))


async def _play(db: Database, as_phone: Phone, phone: VirtualRecord, due: list[Processed]) -> int:
    """Report the outcomes of `due`, the next ones of the phone's script in turn."""
    outcomes = script.parse(phone.script)
    async with db.write() as conn:  # the script moves on first: a step is never used twice
        await repository.advance(conn, phone.device_id, len(due))
    reports = [
        report
        for i, message in enumerate(due)
        for report in _outcome(message, outcomes[(phone.step + i) % len(outcomes)])
    ]
    return (await routing.report(db, as_phone, reports)).events
