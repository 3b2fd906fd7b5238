"""Phones and the queue: pull (claim), state reports, releasing stale claims, expiry."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from smsgw.db.engine import Database, UnitConnection
from smsgw.domain import clock
from smsgw.domain.states import FINAL_STATES, ProcessingState, advance, derive, state_of
from smsgw.events.hub import Event, EventHub, PhoneEvent
from smsgw.events.user_feed import notify
from smsgw.logs import repository as log_rows
from smsgw.logs import service as logs
from smsgw.messages.repository import MessageRecord, message_lock
from smsgw.routing import budgets, repository, rules
from smsgw.routing.budgets import NO_LIMITS, UNBOUNDED, Limits
from smsgw.routing.repository import Phone
from smsgw.webhooks import outbox

TTL_EXPIRED = "TTL expired"
#: A phone's or a carrier link's: both are devices (`deviceId`).
DEVICE_DELETED = "the device this message was pinned to (deviceId) was deleted"

#: Whether a phone was heard from (a request, or an open event stream) after a moment,
#: given the last-seen time the database holds for it.
HeardSince = Callable[[str, datetime, datetime], bool]


@dataclass(frozen=True)
class Pulled:
    """A message handed to a phone, and the state the phone is told (`Cancelling` = drop it)."""

    record: MessageRecord
    state: ProcessingState


@dataclass(slots=True)  # not frozen: made per message, and a frozen __init__ costs 4x
class RecipientReport:
    phone_number: str
    state: ProcessingState
    error: str | None


@dataclass(slots=True)  # not frozen: made per message, and a frozen __init__ costs 4x
class Reported:
    """What a `PATCH /message` did: whether it was about a message the phone holds, how
    many of its messages left `Pending` or `Cancelling` (freeing room under its claim cap),
    and how many webhook events it put in the outbox."""

    held: bool
    freed: int
    events: int
    #: The message is in a final state and so is each of its recipients: nothing that is
    #: reported about it can change anything any more (domain/states.py).
    settled: bool = False


@dataclass(slots=True)  # not frozen: made per message, and a frozen __init__ costs 4x
class StateReport:
    """One snapshot a phone sends in `PATCH /message`."""

    ext_id: str
    state: ProcessingState
    recipients: list[RecipientReport]
    states: dict[ProcessingState, datetime]


class SettledReports:
    """The last snapshots this process applied that left their message settled
    (`Reported.settled`), by phone and message, so that the same snapshot sent again by the
    same phone is answered without a unit of work.

    The app reports the *current* snapshot on each recipient state change, from tasks that
    run when they run (../shared/reference/android-app-protocol.md, section 9, step 8): when
    a message goes from Processed to Delivered quickly, all three reports carry the final
    snapshot, and they arrive together. Applying a snapshot again once its message is
    settled writes nothing (final states never move, and its history entries are the first
    ones), so skipping it is exact. A snapshot that arrives while the same one from the same
    phone is being applied waits for that one, then is skipped if it settled the message and
    applied otherwise. Each process keeps its own; a process that has not seen the snapshot
    applies it.
    """

    def __init__(self, size: int = 16384) -> None:
        self._size = size
        self._seen: OrderedDict[tuple[str, str], StateReport] = OrderedDict()
        self._flying: dict[tuple[str, str], tuple[StateReport, asyncio.Future[None]]] = {}

    def known(self, device_id: str, report: StateReport) -> bool:
        return self._seen.get((device_id, report.ext_id)) == report

    def add(self, device_id: str, report: StateReport) -> None:
        self._seen[(device_id, report.ext_id)] = report
        self._seen.move_to_end((device_id, report.ext_id))
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)

    async def unsettled(self, device_id: str, reports: list[StateReport]) -> list[StateReport]:
        """`reports` less those known settled, once the same ones in flight have landed."""
        for item in reports:
            flying = self._flying.get((device_id, item.ext_id))
            if flying is not None and flying[0] == item:
                await asyncio.shield(flying[1])
        return [item for item in reports if not self.known(device_id, item)]

    def take_off(self, device_id: str, reports: list[StateReport]) -> list[tuple[str, str]]:
        """Mark `reports` in flight (those of a message with none in flight yet)."""
        keys = []
        for item in reports:
            key = (device_id, item.ext_id)
            if key not in self._flying:
                self._flying[key] = (item, asyncio.get_running_loop().create_future())
                keys.append(key)
        return keys

    def land(self, keys: list[tuple[str, str]]) -> None:
        for key in keys:
            _, future = self._flying.pop(key)
            future.set_result(None)


@dataclass(frozen=True)
class Pull:
    """What a pull hands the phone, how many messages it newly claimed, and whether its
    budget is spent for now or held pinned messages back (`limited`: work that waits is
    then for another phone)."""

    items: list[Pulled]
    claimed: int
    limited: bool = False
    #: For a link for all accounts: the account its next pull starts from (the one after
    #: the last this pull claimed for), so that every account with work gets its turn.
    next_account: int = 0


async def pull(
    db: Database, phone: Phone, newest_first: bool, cap: int, limits: Limits = NO_LIMITS
) -> Pull:
    """What the phone should work on: what it holds, plus new claims up to its cap and
    within its budget (`limits`: the server's defaults; routing/budgets.py).

    One unit of work on the group-commit path (db/engine.py): plain statements, no thread
    hop but the COMMIT's, committed with whatever else is being written. It names its phone
    among its batch's locks (`write_unit`), as `report` names its messages: the phone's row
    stays locked to the end of the batch (`repository.lock_phone`)."""
    now = clock.now()
    return await db.write_unit(
        lambda conn: pull_unit(conn, phone, newest_first, cap, now, limits),
        locks=[phone_lock(phone.device_id)],
    )


async def pull_unit(
    conn: UnitConnection,
    phone: Phone,
    newest_first: bool,
    cap: int,
    now: datetime,
    limits: Limits = NO_LIMITS,
    accounts_from: int = 0,
) -> Pull:
    """`pull`'s unit of work. Pinned messages take the budget first, then the queue, of
    which the phone (or link) claims what its owner's routing rule gives it (rules.py); a
    link for all accounts claims from every account's queue under each one's rule, from
    account `accounts_from` on (`_claim_across`)."""
    await repository.lock_phone(conn, phone.device_id)
    state = await repository.pull_state(conn, phone.device_id, now)
    if state is None:  # deleted meanwhile
        return Pull([], 0)
    budget = budgets.stored_budget(limits.own(state.per_minute, state.per_day), state.usage, now)
    free = cap - state.in_flight
    claimed: list[tuple[int, int]] = []
    next_account = 0
    if free > 0:
        room, first_max = budget.room(), budget.first_max()
        if budget.limited and state.pinned_due:  # their share first (`budgets.within`)
            room, first_max = max(0, room - state.pinned_due), 0
        if phone.every_account:
            claimed, next_account = await _claim_across(
                conn, phone, free, now, newest_first, (room, first_max), accounts_from
            )
        else:
            claimed = await repository.claim(
                conn, phone, free, now, newest_first, room, first_max, state.rule
            )
    spent = sum(parts for _, parts in claimed)
    held = await repository.held(conn, phone, newest_first, now)
    held, pinned, withheld = budgets.within(held, budget, spent)
    await repository.mark_taken(conn, [r.pk for r in held if r.claimed_at is None], now)
    after = budget.spend(spent + pinned)
    if spent + pinned:
        await repository.save_usage(conn, phone.device_id, now, after)
    dropped = await repository.released_from(conn, phone)
    pulled = [Pulled(r, state_of(r.state)) for r in held]
    limited = withheld or (budget.limited and after.exhausted)
    return Pull(
        pulled + [Pulled(r, ProcessingState.CANCELLING) for r in dropped],
        len(claimed),
        limited,
        next_account,
    )


#: The accounts a link for all accounts claims for in one pull at most.
ACCOUNTS_PER_PULL = 100


async def _claim_across(
    conn: UnitConnection,
    link: Phone,
    free: int,
    now: datetime,
    newest_first: bool,
    budget: tuple[int, int],
    start: int,
) -> tuple[list[tuple[int, int]], int]:
    """A link for all accounts claims up to `free` queued messages from the accounts with
    queued messages (up to ACCOUNTS_PER_PULL of them, from account `start` on), each claim
    as if the link were that account's, under its routing rule. Each account gets an even
    share of `free` first, then what is left goes to those that had more; all within the
    link's own budget (`room` parts, a first message of at most `first_max`). Returns (key,
    parts) of what it won, and the account to start from next time."""
    room, first_max = budget
    owners = await repository.queued_owners(conn, start, ACCOUNTS_PER_PULL)
    share = max(1, free // max(1, len(owners)))
    claimed: list[tuple[int, int]] = []
    more: list[tuple[Phone, rules.Rule]] = []
    next_account = 0

    async def take(as_owner: Phone, rule: rules.Rule, count: int) -> int:
        spent = sum(parts for _, parts in claimed)
        left = room if room >= UNBOUNDED else max(0, room - spent)
        got = await repository.claim(
            conn, as_owner, count, now, newest_first, left, 0 if claimed else first_max, rule
        )
        claimed.extend(got)
        return len(got)

    for owner in owners:
        count = min(share, free - len(claimed))
        if count <= 0:
            break
        as_owner = replace(link, user_id=owner)
        rule = await rules.of_owner(conn, owner)
        next_account = owner + 1
        if await take(as_owner, rule, count) == count:
            more.append((as_owner, rule))
    for as_owner, rule in more:
        if len(claimed) >= free:
            break
        await take(as_owner, rule, free - len(claimed))
    return claimed, next_account


def _match(
    stored: dict[str, repository.StoredRecipient], number: str
) -> repository.StoredRecipient | None:
    found = stored.get(number)
    if found is None and not number.startswith("+"):
        found = stored.get("+" + number)  # old app versions drop the +
    return found


def _step(
    recipient: repository.StoredRecipient, item: RecipientReport
) -> tuple[ProcessingState, str | None]:
    """A recipient's state and error once a report on it is applied: states only move
    forward; a failure's error (at most 256 characters) replaces the one stored."""
    state = advance(state_of(recipient.state), item.state)
    error = item.error[:256] if item.error and state == ProcessingState.FAILED else recipient.error
    return state, error


def _message_state(
    current: str,
    stored: dict[str, repository.StoredRecipient],
    report: StateReport,
    now: datetime,
) -> tuple[ProcessingState, dict[str, datetime]]:
    """The message's state from its recipients' (never backwards), and the history entries
    the snapshot brings (its own times, the new state's `now` unless given)."""
    derived = derive([state_of(r.state) for r in stored.values()])
    state = advance(state_of(current), derived)
    entries = {s.value: at for s, at in report.states.items() if s != ProcessingState.PENDING}
    entries.setdefault(state.value, now)
    return state, entries


def _reported(
    current: str,
    state: ProcessingState,
    stored: dict[str, repository.StoredRecipient],
    events: int,
) -> Reported:
    """What applying a snapshot did. Room under the phone's cap: a message it held (Pending,
    or Cancelling: a cancel it has not confirmed) that has now left those states."""
    freed = int(current in repository.ACTIVE and state not in repository.ACTIVE)
    settled = state in FINAL_STATES and all(
        state_of(r.state) in FINAL_STATES for r in stored.values()
    )
    return Reported(held=True, freed=freed, events=events, settled=settled)


async def _apply(
    conn: UnitConnection,
    phone: Phone,
    report: StateReport,
    now: datetime,
    events: bool,
    wait: outbox.PostWait,
) -> Reported:
    """Apply one snapshot: recipients only move forward, the message state follows them.

    With `events`, each recipient state change is put in the webhook outbox. A snapshot that
    changes nothing (the app repeats itself) writes nothing.
    """
    found = await repository.reported_message(conn, phone, report.ext_id)
    if found is None:
        await repository.acknowledge_release(conn, phone, report.ext_id)
        return Reported(held=False, freed=0, events=0)
    key, current = found
    recorded = 0
    stored = {r.phone_number: r for r in await repository.recipients_of(conn, key)}
    for item in report.recipients:
        recipient = _match(stored, item.phone_number)
        if recipient is None:
            continue
        state, error = _step(recipient, item)
        if state != recipient.state or error != recipient.error:
            await repository.set_recipient(conn, recipient.id, state.value, error)
            if events and state != recipient.state:  # webhooks: same transaction as the state
                at = report.states.get(state, now)
                recorded += await outbox.record_state_unit(
                    conn, phone.user_id, phone.device_id, report.ext_id,
                    recipient.phone_number, state.value, error, at, wait,
                )  # fmt: skip
            stored[recipient.phone_number] = repository.StoredRecipient(
                recipient.id, recipient.phone_number, state.value, error
            )
    state, entries = _message_state(current, stored, report, now)
    if state != current:
        await repository.set_message_state(conn, key, state.value, now)
    known = await repository.history_states(conn, key)
    fresh = {s: at for s, at in entries.items() if s not in known}
    if fresh:  # the first timestamp per state wins
        error = next((r.error for r in stored.values() if r.error), None)
        await logs.new_states_unit(
            conn, phone.user_id, report.ext_id, fresh, phone.device_id, error
        )
        await repository.add_history(conn, key, fresh)
    return _reported(current, state, stored, recorded)


@dataclass
class _Writes:
    """The rows a batch of snapshots changes, written together at the end of its unit."""

    recipients: list[tuple[str, str | None, int]]
    messages: list[tuple[int, str]]
    history: list[tuple[int, str, datetime]]
    logs: list[logs.StateRow]


async def _apply_many(
    conn: UnitConnection,
    phone: Phone,
    reports: list[StateReport],
    now: datetime,
    events: bool,
    wait: outbox.PostWait,
) -> list[Reported]:
    """`_apply` of each snapshot, in one unit, with the reads of all of them made together
    (one statement each: their messages, recipients and history) and their writes too (one
    statement per table), so a batch (a link's answers and receipts of a moment) costs a few
    statements rather than a few per message. The same rules and results as `_apply` one
    after the other; two snapshots of one message in a batch are applied that way."""
    if len(reports) < 2 or len({item.ext_id for item in reports}) < len(reports):
        return [await _apply(conn, phone, item, now, events, wait) for item in reports]
    found = await repository.reported_messages(conn, phone, [item.ext_id for item in reports])
    keys = [key for key, _ in found.values()]
    recipients = await repository.recipients_of_many(conn, keys)
    histories = await repository.history_states_many(conn, keys)
    writes, matching = _Writes([], [], [], []), outbox.Matching()
    done = []
    for item in reports:
        if item.ext_id not in found:
            await repository.acknowledge_release(conn, phone, item.ext_id)
            done.append(Reported(held=False, freed=0, events=0))
            continue
        key, current = found[item.ext_id]
        stored = {r.phone_number: r for r in recipients[key]}
        message = (key, current, stored, histories[key])
        how = (events, wait, matching)
        done.append(await _apply_one(conn, phone, item, now, message, how, writes))
    await repository.set_recipients(conn, writes.recipients)
    await repository.set_message_states(conn, writes.messages, now)
    await logs.add_rows_unit(conn, writes.logs)
    await repository.add_histories(conn, writes.history)
    return done


async def _apply_one(
    conn: UnitConnection,
    phone: Phone,
    report: StateReport,
    now: datetime,
    message: tuple[int, str, dict[str, repository.StoredRecipient], set[str]],
    how: tuple[bool, outbox.PostWait, outbox.Matching],
    writes: _Writes,
) -> Reported:
    """`_apply` of one snapshot of `_apply_many`: its message (key, state, recipients,
    history states) read already, its row changes added to `writes` (webhook events are
    recorded at once, as `_apply` records them)."""
    key, current, stored, known = message
    events, wait, matching = how
    recorded = 0
    for item in report.recipients:
        recipient = _match(stored, item.phone_number)
        if recipient is None:
            continue
        state, error = _step(recipient, item)
        if state != recipient.state or error != recipient.error:
            writes.recipients.append((state.value, error, recipient.id))
            if events and state != recipient.state:
                at = report.states.get(state, now)
                recorded += await outbox.record_state_unit(
                    conn, phone.user_id, phone.device_id, report.ext_id,
                    recipient.phone_number, state.value, error, at, wait, matching,
                )  # fmt: skip
            stored[recipient.phone_number] = repository.StoredRecipient(
                recipient.id, recipient.phone_number, state.value, error
            )
    state, entries = _message_state(current, stored, report, now)
    if state != current:
        writes.messages.append((key, state.value))
    fresh = {s: at for s, at in entries.items() if s not in known}
    if fresh:
        error = next((r.error for r in stored.values() if r.error), None)
        writes.logs += logs.new_state_rows(
            phone.user_id, report.ext_id, fresh, phone.device_id, error, now
        )
        writes.history += [(key, s, at) for s, at in fresh.items()]
    return _reported(current, state, stored, recorded)


async def report(
    db: Database,
    phone: Phone,
    reports: list[StateReport],
    events: bool = True,
    wait: outbox.PostWait = outbox.NO_WAIT,
    settled: SettledReports | None = None,
) -> Reported:
    """Apply state snapshots idempotently; unknown or foreign ids are ignored.

    `events`: write webhook events for the changes (False when phones deliver their own);
    `wait`: those the phone also posts itself wait for its post (webhooks/outbox.py);
    `settled`: snapshots already applied to a settled message, skipped (`SettledReports`).
    All the snapshots are one unit of work on the group-commit path, as `pull`.

    Returns what the reports did (`Reported`).
    """
    if settled is not None:
        reports = await settled.unsettled(phone.device_id, reports)
        if not reports:
            return Reported(held=False, freed=0, events=0)
    now = clock.now()

    async def work(conn: UnitConnection) -> list[Reported]:
        return await _apply_many(conn, phone, reports, now, events, wait)

    # A phone's reports of one message may reach several nodes at once (behind a balancer):
    # their batches lock the messages in one order (`write_unit`'s locks).
    locks = [message_lock(phone.user_id, item.ext_id) for item in reports]
    if settled is None:
        done = await db.write_unit(work, locks=locks)
    else:
        flying = settled.take_off(phone.device_id, reports)
        try:
            done = await db.write_unit(work, locks=locks)
            for item, result in zip(reports, done, strict=True):
                if result.settled:
                    settled.add(phone.device_id, item)
        finally:
            settled.land(flying)
    reported = _total(done)
    if reported.held:
        notify(db, phone.user_id)  # the dashboard's live views of this user
    return reported


def phone_lock(device_id: str) -> str:
    """The name of the lock a batch takes on a phone (`pull`)."""
    return f"phone {device_id}"


def _total(done: list[Reported]) -> Reported:
    return Reported(
        any(d.held for d in done), sum(d.freed for d in done), sum(d.events for d in done)
    )


async def report_unit(
    conn: UnitConnection, phone: Phone, reports: list[StateReport], now: datetime
) -> Reported:
    """`report`'s work (webhook events written) inside a caller's own unit of work, so that
    the reports commit with what the caller changed (a link's claim, its answers and
    receipts): one transaction rather than two. The caller tells the owner's live views
    once it has committed (`notify_reported`)."""
    return _total(await _apply_many(conn, phone, reports, now, True, outbox.NO_WAIT))


def notify_reported(db: Database, phone: Phone, reported: Reported) -> None:
    """After the commit of a `report_unit`: the dashboard's live views of the owner."""
    if reported.held:
        notify(db, phone.user_id)


async def has_work_for(db: Database, phone: Phone, limits: Limits | None = None) -> bool:
    """Whether queued work waits that this phone may take; with `limits` (the server's),
    that it may take now, within its budget (else only expedited messages count). For a
    link for all accounts: in the queue of one of the accounts its pulls look at."""
    now = clock.now()
    if not phone.every_account:
        return await db.read_unit(lambda conn: repository.has_claimable(conn, phone, now, limits))

    async def any_account(conn: UnitConnection) -> bool:  # a link for all accounts
        for owner in await repository.queued_owners(conn, 0, ACCOUNTS_PER_PULL):
            if await repository.has_claimable(conn, replace(phone, user_id=owner), now, limits):
                return True
        return False

    return await db.read_unit(any_account)


async def has_pinned_for(db: Database, phone: Phone) -> bool:
    """Whether a message pinned to this phone (or link) is due and not handed over yet."""
    now = clock.now()
    return await db.read_unit(lambda conn: repository.has_due_untaken(conn, phone.device_id, now))


async def owners_with_work(db: Database, limits: dict[int, int]) -> list[tuple[int, int]]:
    """(owner, queued messages waiting for a phone, counted up to the owner's limit) of the
    owners in `limits` that have any."""
    now = clock.now()

    async def count(conn: UnitConnection) -> list[tuple[int, int]]:
        found = [
            (owner, await repository.queued_due(conn, owner, n, now)) for owner, n in limits.items()
        ]
        return [(owner, waiting) for owner, waiting in found if waiting]

    return await db.read_unit(count)


async def phones_with_due_pinned(
    db: Database, phones: dict[int, set[str]]
) -> list[tuple[int, str]]:
    """(owner, phone) of `phones` (owner: its phones) with pinned messages that are due and
    not yet handed over."""
    now = clock.now()

    async def find(conn: UnitConnection) -> list[tuple[int, str]]:
        return [
            (owner, device_id)
            for owner, devices in phones.items()
            for device_id in sorted(devices)
            if await repository.has_due_untaken(conn, device_id, now)
        ]

    return await db.read_unit(find)


async def release_stale(db: Database, after_seconds: int, heard_since: HeardSince) -> int:
    """Return to the queue unreported claims of phones silent for `after_seconds`.

    A message the phone reported on (even `Pending`, which means "I have it") is never
    released, and neither is a pinned one. `after_seconds == 0` turns release off.
    """
    if after_seconds == 0:
        return 0
    cutoff = clock.now() - timedelta(seconds=after_seconds)
    released: list[int] = []
    async with db.read() as conn:  # look first: a write would hold up the API (db/engine.py)
        if not await repository.stale_claims(conn, cutoff):
            return 0
    async with db.write() as conn:
        for key, device_id, claimed_at, last_seen in await repository.stale_claims(conn, cutoff):
            if heard_since(device_id, cutoff, last_seen):
                continue
            if await repository.release(conn, key, device_id, claimed_at):
                released.append(key)
        owners = {user_id for user_id, _ in await log_rows.owners_of(conn, released)}
    _notify_owners(db, owners)
    return len(released)


async def expire(db: Database) -> int:
    """Fail queued messages that no phone took before their validUntil."""
    now = clock.now()
    async with db.read() as conn:  # look first: a write would hold up the API (db/engine.py)
        if not await repository.expired_unclaimed(conn, now):
            return 0
    async with db.write() as conn:
        keys = await repository.expired_unclaimed(conn, now)
        await repository.fail(conn, keys, TTL_EXPIRED, now)
        await logs.messages_failed(conn, keys, TTL_EXPIRED)
        await outbox.record_server_state(conn, keys, ProcessingState.FAILED.value, TTL_EXPIRED, now)
        owners = {user_id for user_id, _ in await log_rows.owners_of(conn, keys)}
    _notify_owners(db, owners)
    return len(keys)


def _notify_owners(db: Database, owners: set[int]) -> None:
    """After commit: the dashboard's live views of every owner whose messages changed."""
    for user_id in owners:
        notify(db, user_id)


def wake_for_new(hub: EventHub, user_id: int, device_id: str | None, cap: int) -> int:
    """A new message of `user_id` (pinned to `device_id`, or for any of the user's phones)
    is queued: tell its phone, or one phone in turn unless one told already will take it
    (EventHub.pick_for_new)."""
    targets = [device_id] if device_id is not None else hub.pick_for_new(user_id, cap)
    return hub.publish(targets, Event(PhoneEvent.MESSAGE_ENQUEUED))


def wake(
    hub: EventHub,
    user_id: int,
    device_id: str | None = None,
    count: int = 1,
    here_only: bool = False,
    among: set[str] | None = None,
) -> int:
    """Tell `device_id`, or `count` of the user's connected phones in turn (of those `among`,
    when given), that work waits.

    Waking every phone for every message would make them all pull at once and all but one
    find nothing; phones take turns instead, and a phone that reports progress while work
    remains is woken again (so a fast phone takes more).
    """
    targets = [device_id] if device_id is not None else hub.pick(user_id, count, here_only, among)
    return hub.publish(targets, Event(PhoneEvent.MESSAGE_ENQUEUED))
