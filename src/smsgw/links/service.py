"""Link use cases: add, list and delete links; and the link worker's steps, each through
the services a phone's requests use: `routing.pull_unit` claims its messages (as
`GET /message`), `routing.report` applies the states its carrier answers (as
`PATCH /message`: webhooks, history and logs follow alike), and an MO goes through
`webhooks.hub.accept` (as a phone's post of `sms:received`: inbox, opt-outs, webhooks).
"""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.engine import Database, DriverUnit, UnitConnection
from smsgw.devices import service as devices
from smsgw.domain import clock, ids
from smsgw.domain.errors import InvalidInput
from smsgw.domain.states import FINAL_STATES, ProcessingState, derive
from smsgw.events.user_feed import notify
from smsgw.links import repository
from smsgw.links.encoding import (
    MAX_DATA,
    MAX_PARTS,
    MAX_REFERENCE,
    Segment,
    TooManyParts,
    decode,
    encode,
    split_header,
)
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
NOT_TEXT = "a carrier link sends text and data messages only"
TOO_MUCH_DATA = (
    f"a data message through a carrier link is one SMS: at most {MAX_DATA} bytes of data"
)
ENCRYPTED = "a carrier link cannot send encrypted messages (the Android app decrypts them)"
#: The recipient's error for a message that needs more parts than a link can number.
TOO_LONG = "too long for a carrier link: {parts} parts, at most " + str(MAX_PARTS)
#: The recipient's error for a message whose encoding failed otherwise (a bug, logged).
NOT_ENCODED = "a carrier link could not encode this message"
#: The recipient's error for a part whose submit_sm got no answer (docs/links.md).
NO_ANSWER = (
    "no answer from the SMSC to submit_sm before the connection ended; not resent, since "
    "the carrier may have accepted it"
)
_FAILED = (repository.REJECTED, repository.UNKNOWN, repository.UNDELIVERED)

log = logging.getLogger("smsgw.links")


async def add(
    db: Database,
    user_id: int,
    login: str,
    name: str | None,
    config: SmppSettings,
    all_accounts: bool = False,
) -> str:
    """Add an SMPP link to `user_id`'s account (its sender row and settings in one
    transaction); its id. The server that runs links binds it within a second or so. With
    `all_accounts` (the operator's choice only: the CLI), the link takes every account's
    queued messages; `user_id` holds it."""
    name = (name or "").strip() or DEFAULT_NAME
    for problem in problems({"name": name}).values():
        raise InvalidInput(problem)

    async def settings_of(conn: AsyncConnection, device_id: str) -> None:
        values = config.row() | {"device_id": device_id, "kind": "smpp"}
        values |= {"state": "new", "detail": None, "state_at": clock.now()}
        values |= {"all_accounts": all_accounts}
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


async def lease(db: Database, driver: str, seconds: float) -> list[repository.Leased]:
    """The links `driver` runs, each with the end of its lease (taking for `seconds` those
    no driver holds or whose driver's lease ran out; renewing its own when half of it is
    gone)."""
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
    notify(db, link.user_id)  # the holder's open links page shows it (web/live.py)


def _phone(link: LinkRecord, online_window: timedelta = ONLINE_WINDOW) -> Phone:
    """The link as a sender; `online_window`: how recently a phone of the owner must have
    been heard from to count as online (its routing rule's mode `fallback`)."""
    return Phone(
        link.device_id, link.user_id, None, link=True, online_window=online_window,
        every_account=link.all_accounts,
    )  # fmt: skip


def _as_owner(link: LinkRecord, owner: int) -> Phone:
    """The link reporting on a message of `owner` (its own account's, or, for a link for
    all accounts, any account's): a phone's report applies to its owner's messages."""
    return Phone(link.device_id, owner, None, link=True)


def _problem(record: MessageRecord) -> str | None:
    if record.is_encrypted:
        return ENCRYPTED
    if record.text is not None:
        return None
    if record.data is None or record.port is None:
        return NOT_TEXT
    if len(base64.b64decode(record.data)) > MAX_DATA:
        return TOO_MUCH_DATA
    return None


def _verdict(link: LinkRecord, record: MessageRecord) -> tuple[int, str | None]:
    """The parts `link` sends `record` as, or 0 and why it cannot send it. Whatever goes
    wrong with one message fails that message only: an exception would roll the claim back,
    leave the message queued to fail every later claim alike, and the link would send
    nothing more."""
    try:
        problem = _problem(record)
        if problem is not None:
            return 0, problem
        if record.text is None:
            return 1, None
        return len(encode(record.text, record.pk, link.data_coding).parts), None
    except TooManyParts as error:
        return 0, TOO_LONG.format(parts=error.parts)
    except Exception as error:  # (named by its type only: its words may quote the text)
        log.error("message %s could not be encoded for a carrier link: %s", record.id,
                  type(error).__name__)  # fmt: skip
        return 0, NOT_ENCODED


def _open(record: MessageRecord) -> list[str]:
    return [
        r.phone_number
        for r in record.recipients
        if r.state not in FINAL_STATES  # (StrEnum)
    ]


def _snapshot(
    record: MessageRecord, state: ProcessingState, at: datetime, error: str | None = None
) -> StateReport:
    numbers = [RecipientReport(number, state, error) for number in _open(record)]
    return StateReport(record.id, state, numbers, {state: at})


def _plan(link: LinkRecord, record: MessageRecord, count: int) -> list[dict[str, object]]:
    """The part rows of a message in `count` parts: each of its open recipients gets each
    part."""
    return [
        {"device_id": link.device_id, "message_id": record.pk, "phone_number": number,
         "part": n, "parts": count}
        for number in _open(record) for n in range(1, count + 1)
    ]  # fmt: skip


@dataclass(slots=True)  # not frozen: made per message, and a frozen __init__ costs 4x
class Claimed:
    """What a claim did: messages it took, and webhook events it put in the outbox; for a
    link for all accounts, the account its next claim starts from."""

    claimed: int
    events: int
    next_account: int = 0


#: A state report on a message of an account (the account first).
OwnedReport = tuple[int, StateReport]


async def claim(
    db: Database,
    link: LinkRecord,
    cap: int,
    online_window: timedelta = ONLINE_WINDOW,
    accounts_from: int = 0,
) -> Claimed:
    """Claim the owner's queued messages for the link as a phone's pull does (those the
    owner's routing rule gives links: routing/rules.py; for a link for all accounts, those
    of every account under each one's rule, from account `accounts_from` on), plan their
    parts in the same transaction (one unit of work), and report them Processed (or Failed
    when a link cannot send them, Cancelled when cancelled before any part went out) in it
    too."""
    now = clock.now()
    phone = _phone(link, online_window)

    async def unit(conn: UnitConnection) -> tuple[Pull, list[Done]]:
        pulled = await routing.pull_unit(conn, phone, False, cap, now, accounts_from=accounts_from)
        taken = [item.record for item in pulled.items if item.state == ProcessingState.PENDING]
        verdicts = {record.pk: _verdict(link, record) for record in taken}
        sendable = [record for record in taken if verdicts[record.pk][1] is None]
        have = await repository.planned(conn, link.device_id, [r.pk for r in sendable])
        await repository.plan(
            conn,
            [row for r in sendable if r.pk not in have
             for row in _plan(link, r, verdicts[r.pk][0])],
        )  # fmt: skip
        cancelled = [
            (item.record.pk, _snapshot(item.record, ProcessingState.CANCELLED, now))
            for item in pulled.items
            if item.state == ProcessingState.CANCELLING
            and await repository.cancel_unsent(conn, link.device_id, item.record.pk)
        ]
        keys = [item.record.pk for item in pulled.items]
        owners = await repository.owners(conn, keys) if link.all_accounts else {}
        reports = [(owners.get(pk, link.user_id), report) for pk, report in cancelled]
        for record in taken:
            problem = verdicts[record.pk][1]
            failed, processed = ProcessingState.FAILED, ProcessingState.PROCESSED
            report = _snapshot(record, failed if problem else processed, now, problem)
            reports.append((owners.get(record.pk, link.user_id), report))
        # Reported in the claim's own transaction (one commit, not two).
        return pulled, await _report_unit(conn, link, reports, now)

    pulled, done = await db.write_unit(unit)
    return Claimed(pulled.claimed, _notify(db, done), pulled.next_account)


async def may_claim(
    db: Database, link: LinkRecord, online_window: timedelta = ONLINE_WINDOW
) -> bool:
    """Whether the owner's queue holds a message the link could claim, or one pinned to the
    link waits (a read: most looks find nothing, and a claim is a write)."""
    phone = _phone(link, online_window)
    return await routing.has_work_for(db, phone) or await routing.has_pinned_for(db, phone)


async def unsent(db: Database, link: LinkRecord, limit: int) -> list[repository.PartJob]:
    return await db.read_unit(lambda conn: repository.unsent(conn, link.device_id, limit))


async def intend(db: Database, link: LinkRecord, driver: str, ids_: list[int]) -> set[int]:
    """Record that these parts' submit_sm are about to go out; returns once committed, with
    the parts it took (those still planned on the link, while `driver` holds its lease:
    repository.intend). Only those may be submitted."""
    now = clock.now()
    return await db.write_unit(
        lambda conn: repository.intend(conn, link.device_id, driver, ids_, now)
    )


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


@dataclass(slots=True)  # not frozen: made per message, and a frozen __init__ costs 4x
class Settled:
    """What `settle` did: webhook events it put in the outbox, and the receipts that named
    no part of the link awaiting one (yet: the part's answer may still be on its way to the
    database)."""

    events: int
    unmatched: list[Receipt]
    #: Receipts that found their part as the same number in the other base.
    crossed: int = 0


Outcome = tuple[int, str, str | None, str | None]


async def settle(
    db: Database,
    link: LinkRecord,
    outcomes: Iterable[Outcome],
    receipts: Iterable[Receipt],
    loose: set[str] | frozenset[str] = frozenset(),
    bases: bool = True,
) -> Settled:
    """Record the carrier's answers (part, outcome, carrier id, error) and receipts, and
    report the recipients whose state they change, as a phone reports them, in the same
    transaction. A receipt whose id is in `loose` may name its part in another spelling
    (repository.receipted; the same number in the other base too when `bases`)."""
    outcomes, receipts = list(outcomes), list(receipts)
    applied: list[repository.Applied] = [
        (receipt.smsc_id, repository.DELIVERED, None) if receipt.delivered
        else (receipt.smsc_id, repository.UNDELIVERED, receipt.error())
        for receipt in receipts
    ]  # fmt: skip
    now = clock.now()

    crossed: set[str] = set()

    async def unit(conn: UnitConnection) -> tuple[list[Done], list[Receipt]]:
        crossed.clear()  # (a unit may run again)
        await repository.set_outcomes(conn, outcomes)
        touched = await repository.pairs_of(conn, [o[0] for o in outcomes])
        found = await repository.receipted(conn, link.device_id, applied, loose, bases, crossed)
        unmatched = []
        for receipt in receipts:
            if receipt.smsc_id in found:
                touched.add(found[receipt.smsc_id])
            else:
                unmatched.append(receipt)
        # The states they decide, reported in the same transaction (one commit, not two).
        return await _report_unit(conn, link, await _decided(conn, touched), now), unmatched

    done, unmatched = await db.write_unit(unit)
    return Settled(_notify(db, done), unmatched, len(crossed))


async def _decided(conn: UnitConnection, touched: set[tuple[int, str]]) -> list[OwnedReport]:
    """The state report of each touched (message, recipient) its parts now decide, with
    the message's account."""
    message_ids = sorted({message_id for message_id, _ in touched})
    if not message_ids:
        return []
    parts = await repository.outcomes_of(conn, message_ids)
    ext_ids = await repository.ext_ids(conn, message_ids)
    # Each message's recipients once (not every part of the batch for each message: a link
    # that falls behind settles hundreds of messages at once).
    by_message: dict[int, list[RecipientReport]] = {}
    for (message_id, number), outcomes in parts.items():
        if (message_id, number) in touched and (state := recipient_state(outcomes)) is not None:
            by_message.setdefault(message_id, []).append(RecipientReport(number, *state))
    reports = []
    for message_id in message_ids:
        numbers = by_message.get(message_id, [])
        if numbers and message_id in ext_ids:
            overall = derive([r.state for r in numbers])
            ext_id, owner = ext_ids[message_id]
            reports.append((owner, StateReport(ext_id, overall, numbers, {})))
    return reports


#: What the reports on one account's messages did, and as whose sender they were applied.
Done = tuple[Phone, routing.Reported]


async def _report_unit(
    conn: UnitConnection, link: LinkRecord, reports: list[OwnedReport], now: datetime
) -> list[Done]:
    """Apply the reports inside the caller's unit of work, those of each account as the link
    of that account (a link for all accounts reports on several accounts' messages)."""
    by_owner: dict[int, list[StateReport]] = {}
    for owner, report in reports:
        by_owner.setdefault(owner, []).append(report)
    done = []
    for owner, group in by_owner.items():
        phone = _as_owner(link, owner)
        done.append((phone, await routing.report_unit(conn, phone, group, now)))
    return done


def _notify(db: Database, done: list[Done]) -> int:
    """After the commit of `_report_unit`: each account's live views told; the webhook
    events put in the outbox."""
    for phone, reported in done:
        routing.notify_reported(db, phone, reported)
    return sum(reported.events for _, reported in done)


async def _report(db: Database, link: LinkRecord, reports: list[OwnedReport]) -> int:
    """Apply the reports as the link's phone-like reports, those of each account as the
    link of that account (one unit of work per account): webhook events it put in the
    outbox."""
    by_owner: dict[int, list[StateReport]] = {}
    for owner, report in reports:
        by_owner.setdefault(owner, []).append(report)
    events = 0
    for owner, group in by_owner.items():
        events += (await routing.report(db, _as_owner(link, owner), group)).events
    return events


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


#: How long the parts of a long MO wait for the rest (Kannel's default, 1,800 s, too): then
#: the parts that came go to the inbox as one SMS, in their order (links/service.py
#: `join_stale`).
MO_PARTS_WAIT = timedelta(minutes=30)
#: How many such SMS a look takes at most (each second: the rest wait for the next look).
STALE_MO_AT_ONCE = 100


async def received(
    db: Database, link: LinkRecord, mo: MobileOriginated, words: hub.OptOutWords
) -> None:
    """An SMS the carrier delivers to the link (an MO): taken in as a phone's post of
    `sms:received` is (inbox, opt-out words, then the webhooks), by the link's account; on
    a link for all accounts, by the account that last sent to the MO's sender through the
    link (a reply goes back to who wrote), else by the account that holds the link.

    A part of a long SMS (a concatenation header, or sar_* TLVs) is kept until its last part
    comes, then the whole SMS is taken in, in the same transaction as that last part: one
    inbox message, as a phone shows it (or, after MO_PARTS_WAIT, the parts that came:
    `join_stale`). A part the carrier delivers again within MO_PARTS_WAIT after its SMS was
    taken in is dropped (repository.keep_mo_part tells it), as the log says."""
    sender = sender_of(mo.sender, mo.international)
    if len(sender) > MAX_SENDER:
        log.warning("link %s: an incoming SMS's sender of %d characters is cut to %d (SMPP 3.4 "
                    "allows 20)", link.device_id, len(sender), MAX_SENDER)  # fmt: skip
        sender = sender[:MAX_SENDER]
    data, segment = split_header(mo.body, mo.esm_class)
    segment = segment or _sized(link, mo.segment)
    now = clock.now()
    async with db.write() as conn:
        if segment is None:
            await _take_in(conn, link, sender, decode(mo.data_coding, data, 0), now, words)
            return
        key = (link.device_id, sender, segment.reference, segment.total)
        kept = await repository.keep_mo_part(conn, key, segment.number, mo.data_coding, data, now)
        if kept is None:
            log.info("link %s: part %d of %d of an incoming SMS came again after its SMS was "
                     "joined; dropped", link.device_id, segment.number, segment.total)  # fmt: skip
        elif kept >= segment.total:
            text, first = _joined(await repository.take_mo_parts(conn, key, now))
            await _take_in(conn, link, sender, text, first, words)


def _sized(link: LinkRecord, segment: Segment | None) -> Segment | None:
    """The part an MO's sar_* TLVs say it is, unless they are beyond SMPP 3.4's sizes (a
    reference of 2 octets, at most 255 parts; smpp34 reads 4 octets too): then None, an SMS
    of its own, as the log says (its text kept, not joined with parts it cannot be told
    from)."""
    if segment is None or (segment.reference <= MAX_REFERENCE and segment.total <= MAX_PARTS):
        return segment
    log.warning("link %s: an incoming SMS's sar_* TLVs are beyond SMPP 3.4's sizes (reference "
                "%d, %d parts); taken as an SMS of its own", link.device_id, segment.reference,
                segment.total)  # fmt: skip
    return None


#: The most characters of an MO's sender kept (SMPP 3.4's source_addr holds 20; smpp34 reads
#: longer ones): link_mo_parts.sender holds 32, the inbox's sender 128.
MAX_SENDER = 32


def sender_of(address: str, international: bool) -> str:
    """The sender of an MO from `address`: `+` and its digits when its TON is international
    (an alphanumeric or empty address as it is)."""
    if international and address.isascii() and address.isdigit():
        return "+" + address
    return address


def _joined(parts: list[repository.MoPart]) -> tuple[str, datetime]:
    """The text of the parts kept, in their order, and when the first came. Parts in one
    coding are decoded together (a character is never lost at a boundary)."""
    parts = sorted(parts)
    codings = {coding for _, coding, _, _ in parts}
    if len(codings) == 1:
        text = decode(parts[0][1], b"".join(body for _, _, body, _ in parts), 0)
    else:
        text = "".join(decode(coding, body, 0) for _, coding, body, _ in parts)
    return text, min(at for _, _, _, at in parts)


async def _take_in(
    conn: AsyncConnection,
    link: LinkRecord,
    sender: str,
    text: str,
    at: datetime,
    words: hub.OptOutWords,
) -> None:
    owner = link.user_id
    if link.all_accounts:
        numbers = [sender] if sender.startswith("+") else [sender, "+" + sender]
        last = await repository.last_sent_to(DriverUnit(conn), link.device_id, numbers)
        owner = link.user_id if last is None else last
    payload = {
        "messageId": ids.random_token(21), "message": text, "sender": sender,
        "phoneNumber": sender, "receivedAt": clock.format_timestamp(at),
    }  # fmt: skip
    body = {"id": ids.random_token(21), "webhookId": "smsgw-sms-received",
            "event": "sms:received", "deviceId": link.device_id, "payload": payload}  # fmt: skip
    await hub.accept_unit(
        DriverUnit(conn), owner, link.device_id, body, deliver=True, opt_outs=words
    )


async def join_stale(db: Database, held: dict[str, LinkRecord], words: hub.OptOutWords) -> int:
    """Take in the long MO of these links whose parts waited MO_PARTS_WAIT for the rest:
    the parts that came, as one SMS; and forget the parts of those joined MO_PARTS_WAIT
    ago. How many it took in."""
    if not held:  # a process that runs no link takes in none (and need not look every second)
        return 0
    now = clock.now()
    before = now - MO_PARTS_WAIT
    async with db.read() as conn:
        stale = await repository.stale_mo(conn, sorted(held), before, STALE_MO_AT_ONCE)
    forget = sorted({key[0] for key, joined in stale if joined})
    if forget:  # their repeats are told no longer
        async with db.write() as conn:
            await repository.forget_mo_parts(conn, forget, before)
    taken = 0
    for key, joined in stale:
        if joined:  # forgotten above
            continue
        link = held[key[0]]
        async with db.write() as conn:
            parts = await repository.take_mo_parts(conn, key, now)
            if parts:
                text, first = _joined(parts)
                await _take_in(conn, link, key[1], text, first, words)
                taken += 1
    return taken


def error_kind(error: BaseException) -> str:
    """`error` said without its words, which for a database error quote the statement and its
    values (an SMS's text and sender): its type, that of the driver's error SQLAlchemy
    wraps (psycopg's name the condition, as StringDataRightTruncation), and where it was
    raised."""
    kind = type(error).__name__
    wrapped = getattr(error, "orig", None)
    if wrapped is not None:
        kind += f" ({type(wrapped).__module__}.{type(wrapped).__qualname__})"
    return kind + "\n" + "".join(traceback.format_tb(error.__traceback__)).rstrip()


@dataclass(frozen=True)
class MobileOriginated:
    """An MO as the carrier delivered it."""

    sender: str
    international: bool
    esm_class: int
    data_coding: int
    body: bytes
    #: The part of an SMS in parts it is, by its sar_* TLVs (None: one whole SMS, unless
    #: its header says otherwise).
    segment: Segment | None = None
