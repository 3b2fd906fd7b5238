"""Link use cases: add, list and delete links; and the link worker's steps, each through
the services a phone's requests use: `routing.pull_unit` claims its messages (as
`GET /message`), `routing.report` applies the states its carrier answers (as
`PATCH /message`: webhooks, history and logs follow alike), and an MO goes through
`webhooks.hub.accept` (as a phone's post of `sms:received`: inbox, opt-outs, webhooks).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.engine import Database, DriverUnit, UnitConnection
from smsgw.devices import service as devices
from smsgw.domain import clock, ids
from smsgw.domain.errors import InvalidInput
from smsgw.domain.states import FINAL_STATES, ProcessingState, derive
from smsgw.links import repository
from smsgw.links.encoding import decode, encode
from smsgw.links.errors import UnknownLink
from smsgw.links.receipts import Receipt
from smsgw.links.repository import LinkRecord
from smsgw.links.schemas import SmppSettings, problems
from smsgw.messages.repository import MessageRecord
from smsgw.routing import service as routing
from smsgw.routing.repository import ONLINE_WINDOW, Phone
from smsgw.routing.service import Pull, RecipientReport, StateReport
from smsgw.webhooks import hub

DEFAULT_NAME = "SMPP link"
NOT_TEXT = "a carrier link sends text messages only (data messages are not supported yet)"
ENCRYPTED = "a carrier link cannot send encrypted messages (the Android app decrypts them)"
#: The recipient's error for a part whose submit_sm got no answer (docs/links.md).
NO_ANSWER = (
    "no answer from the SMSC to submit_sm before the connection ended; not resent, since "
    "the carrier may have accepted it"
)
_FAILED = (repository.REJECTED, repository.UNKNOWN, repository.UNDELIVERED)


async def add(
    db: Database, user_id: int, login: str, name: str | None, config: SmppSettings
) -> str:
    """Add an SMPP link to `user_id`'s account (its sender row and settings in one
    transaction); its id. The server that runs links binds it within a second or so."""
    name = (name or "").strip() or DEFAULT_NAME
    for problem in problems({"name": name}).values():
        raise InvalidInput(problem)

    async def settings_of(conn: AsyncConnection, device_id: str) -> None:
        values = config.row() | {"device_id": device_id, "kind": "smpp"}
        values |= {"state": "new", "detail": None, "state_at": clock.now()}
        await repository.add(conn, values)

    registered = await devices.register(db, user_id, login, name, None, None, link=settings_of)
    return registered.device_id


async def of_user(db: Database, user_id: int) -> list[LinkRecord]:
    async with db.read() as conn:
        return await repository.of_user(conn, user_id)


async def every(db: Database) -> list[tuple[str, LinkRecord]]:
    """Every link, with its owner's login."""
    async with db.read() as conn:
        return await repository.every(conn)


async def delete(db: Database, device_id: str, user_id: int | None = None) -> LinkRecord:
    """Delete a link (of `user_id`, when given) as a phone's deletion does (devices.delete:
    its unsent queued work goes back to the queue); the link deleted. Its runner stops on
    the next round of the server that runs it."""
    async with db.read() as conn:
        link = await repository.by_id(conn, device_id)
    if link is None or (user_id is not None and link.user_id != user_id):
        raise UnknownLink
    await devices.delete(db, link.user_id, device_id)
    return link


# The worker's side.


async def lease(db: Database, driver: str, seconds: float) -> list[LinkRecord]:
    """The links `driver` runs for the next `seconds` (taking those no driver holds or whose
    driver's lease ran out; renewing its own when half of it is gone)."""
    now = clock.now()
    async with db.read() as conn:  # look first: a write would hold up the API (db/engine.py)
        rows = await repository.leases(conn)
    renew = now + timedelta(seconds=seconds / 2)
    if any(
        holder is None or until is None or until < now or (holder == driver and until < renew)
        for _, holder, until in rows
    ):
        async with db.write() as conn:
            return await repository.lease(conn, driver, now, now + timedelta(seconds=seconds))
    async with db.read() as conn:
        return await repository.leases_of(conn, driver)


async def release(db: Database, driver: str) -> None:
    async with db.write() as conn:
        await repository.release(conn, driver)


async def set_state(db: Database, link: LinkRecord, state: str, detail: str | None) -> None:
    async with db.write() as conn:
        await repository.set_state(conn, link.device_id, state, detail, clock.now())


def _phone(link: LinkRecord, online_window: timedelta = ONLINE_WINDOW) -> Phone:
    """The link as a sender; `online_window`: how recently a phone of the owner must have
    been heard from to count as online (its routing rule's mode `fallback`)."""
    return Phone(link.device_id, link.user_id, None, link=True, online_window=online_window)


def _problem(record: MessageRecord) -> str | None:
    if record.is_encrypted:
        return ENCRYPTED
    if record.text is None:
        return NOT_TEXT
    return None


def _open(record: MessageRecord) -> list[str]:
    return [
        r.phone_number for r in record.recipients if ProcessingState(r.state) not in FINAL_STATES
    ]


def _snapshot(
    record: MessageRecord, state: ProcessingState, error: str | None = None
) -> StateReport:
    numbers = [RecipientReport(number, state, error) for number in _open(record)]
    return StateReport(record.id, state, numbers, {state: clock.now()})


def _plan(link: LinkRecord, record: MessageRecord) -> list[dict[str, object]]:
    """The part rows of a message: each of its open recipients gets each part."""
    count = len(encode(record.text or "", record.pk).parts)
    return [
        {"device_id": link.device_id, "message_id": record.pk, "phone_number": number,
         "part": n, "parts": count}
        for number in _open(record) for n in range(1, count + 1)
    ]  # fmt: skip


@dataclass(frozen=True)
class Claimed:
    """What a claim did: messages it took, and webhook events it put in the outbox."""

    claimed: int
    events: int


async def claim(
    db: Database, link: LinkRecord, cap: int, online_window: timedelta = ONLINE_WINDOW
) -> Claimed:
    """Claim the owner's queued messages for the link as a phone's pull does (those the
    owner's routing rule gives links: routing/rules.py), plan their parts in the same
    transaction (one unit of work), and report them Processed (or Failed when a link
    cannot send them, Cancelled when cancelled before any part went out) in it too."""
    phone, now = _phone(link, online_window), clock.now()

    async def unit(conn: UnitConnection) -> tuple[Pull, routing.Reported]:
        pulled = await routing.pull_unit(conn, phone, False, cap, now)
        taken = [item.record for item in pulled.items if item.state == ProcessingState.PENDING]
        sendable = [record for record in taken if _problem(record) is None]
        have = await repository.planned(conn, link.device_id, [r.pk for r in sendable])
        await repository.plan(
            conn, [row for r in sendable if r.pk not in have for row in _plan(link, r)]
        )
        reports = [
            _snapshot(item.record, ProcessingState.CANCELLED)
            for item in pulled.items
            if item.state == ProcessingState.CANCELLING
            and await repository.cancel_unsent(conn, link.device_id, item.record.pk)
        ]
        for record in taken:
            problem = _problem(record)
            failed = ProcessingState.FAILED
            reports.append(_snapshot(record, failed, problem) if problem else _processed(record))
        # Reported in the claim's own transaction (one commit, not two).
        return pulled, await routing.report_unit(conn, phone, reports, now)

    pulled, reported = await db.write_unit(unit)
    routing.notify_reported(db, phone, reported)
    return Claimed(pulled.claimed, reported.events)


def _processed(record: MessageRecord) -> StateReport:
    return _snapshot(record, ProcessingState.PROCESSED)


async def may_claim(
    db: Database, link: LinkRecord, online_window: timedelta = ONLINE_WINDOW
) -> bool:
    """Whether the owner's queue holds a message the link could claim, or one pinned to the
    link waits (a read: most looks find nothing, and a claim is a write)."""
    phone = _phone(link, online_window)
    return await routing.has_work_for(db, phone) or await routing.has_pinned_for(db, phone)


async def unsent(db: Database, link: LinkRecord, limit: int) -> list[repository.PartJob]:
    return await db.read_unit(lambda conn: repository.unsent(conn, link.device_id, limit))


async def intend(db: Database, ids_: list[int]) -> None:
    """Record that these parts' submit_sm are about to go out; returns once committed."""
    now = clock.now()
    await db.write_unit(lambda conn: repository.intend(conn, ids_, now))


async def unintend(db: Database, ids_: list[int]) -> None:
    await db.write_unit(lambda conn: repository.unintend(conn, ids_))


def recipient_state(
    outcomes: list[tuple[str | None, str | None]],
) -> tuple[ProcessingState, str | None] | None:
    """A recipient's state from its parts' outcomes: Failed when one part failed (with its
    error), Delivered when all were delivered, Sent when all were accepted, Cancelled when
    all were cancelled; None while a part waits for the carrier's answer."""
    for outcome, error in outcomes:
        if outcome in _FAILED:
            return ProcessingState.FAILED, error
    found = {outcome for outcome, _ in outcomes}
    if found == {repository.DELIVERED}:
        return ProcessingState.DELIVERED, None
    if found <= {repository.ACCEPTED, repository.DELIVERED}:
        return ProcessingState.SENT, None
    if found == {repository.CANCELLED}:
        return ProcessingState.CANCELLED, None
    return None


@dataclass(frozen=True)
class Settled:
    """What `settle` did: webhook events it put in the outbox, and the receipts that named
    no part of the link (yet: the part's answer may still be on its way to the database)."""

    events: int
    unmatched: list[Receipt]


Outcome = tuple[int, str, str | None, str | None]


async def settle(
    db: Database, link: LinkRecord, outcomes: Iterable[Outcome], receipts: Iterable[Receipt]
) -> Settled:
    """Record the carrier's answers (part, outcome, carrier id, error) and receipts, and
    report the recipients whose state they change, as a phone reports them, in the same
    transaction."""
    outcomes, receipts = list(outcomes), list(receipts)
    applied: list[repository.Applied] = [
        (receipt.smsc_id, repository.DELIVERED, None) if receipt.delivered
        else (receipt.smsc_id, repository.UNDELIVERED, receipt.error())
        for receipt in receipts
    ]  # fmt: skip

    phone, now = _phone(link), clock.now()

    async def unit(conn: UnitConnection) -> tuple[routing.Reported, list[Receipt]]:
        await repository.set_outcomes(conn, outcomes)
        touched = await repository.pairs_of(conn, [o[0] for o in outcomes])
        found = await repository.receipted(conn, link.device_id, applied)
        unmatched = []
        for receipt in receipts:
            if receipt.smsc_id in found:
                touched.add(found[receipt.smsc_id])
            else:
                unmatched.append(receipt)
        # The states they decide, reported in the same transaction (one commit, not two).
        return await routing.report_unit(conn, phone, await _decided(conn, touched), now), unmatched

    reported, unmatched = await db.write_unit(unit)
    routing.notify_reported(db, phone, reported)
    return Settled(reported.events, unmatched)


async def _decided(conn: UnitConnection, touched: set[tuple[int, str]]) -> list[StateReport]:
    """The state report of each touched (message, recipient) its parts now decide."""
    message_ids = sorted({message_id for message_id, _ in touched})
    if not message_ids:
        return []
    parts = await repository.outcomes_of(conn, message_ids)
    ext_ids = await repository.ext_ids(conn, message_ids)
    reports = []
    for message_id in message_ids:
        numbers = [RecipientReport(number, *state)
                   for (mid, number), outcomes in parts.items()
                   if mid == message_id and (mid, number) in touched
                   and (state := recipient_state(outcomes)) is not None]  # fmt: skip
        if numbers and message_id in ext_ids:
            overall = derive([r.state for r in numbers])
            reports.append(StateReport(ext_ids[message_id], overall, numbers, {}))
    return reports


async def _report(db: Database, link: LinkRecord, reports: list[StateReport]) -> int:
    """Apply the reports as the link's phone-like reports: webhook events it put in the
    outbox."""
    if not reports:
        return 0
    return (await routing.report(db, _phone(link), reports)).events


async def recover(db: Database, link: LinkRecord) -> int:
    """Before the link's first session in this process: parts a previous run submitted
    without recording the answer failed as `NO_ANSWER` (never resent: docs/links.md), and
    every message the link holds reported again from its parts (a run that stopped between
    recording answers and reporting them). Webhook events it put in the outbox."""
    async with db.write() as conn:
        unit = DriverUnit(conn)
        doubt = await repository.in_doubt(conn, link.device_id)
        await repository.set_outcomes(
            unit, [(pk, repository.UNKNOWN, None, NO_ANSWER) for pk in doubt]
        )
        touched = await repository.open_pairs(conn, link.device_id)
        reports = await _decided(unit, touched)
    return await _report(db, link, reports)


async def received(
    db: Database, link: LinkRecord, mo: MobileOriginated, words: hub.OptOutWords
) -> None:
    """An SMS the carrier delivers to the link (an MO): taken in as a phone's post of
    `sms:received` is (inbox, opt-out words, then the webhooks)."""
    sender = ("+" + mo.sender) if mo.international and not mo.sender.startswith("+") else mo.sender
    payload = {
        "messageId": ids.random_token(21), "message": decode(mo.data_coding, mo.body, mo.esm_class),
        "sender": sender, "phoneNumber": sender, "receivedAt": clock.format_timestamp(clock.now()),
    }  # fmt: skip
    body = {"id": ids.random_token(21), "webhookId": "smsgw-sms-received",
            "event": "sms:received", "deviceId": link.device_id, "payload": payload}  # fmt: skip
    await hub.accept(db, link.user_id, link.device_id, body, deliver=True, opt_outs=words)


@dataclass(frozen=True)
class MobileOriginated:
    """An MO as the carrier delivered it."""

    sender: str
    international: bool
    esm_class: int
    data_coding: int
    body: bytes
