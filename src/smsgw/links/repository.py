"""Queries on links and their parts. Every query a user drives is scoped to its owner; the
link worker's (leases, parts, outcomes) are the server's own work on the links it runs."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.accounts.models import User
from smsgw.db.base import table_of
from smsgw.db.engine import ColumnReader, ColumnWriter, RowInsert, UnitConnection, marks
from smsgw.devices.models import Device
from smsgw.domain.states import ProcessingState
from smsgw.links.models import Link, LinkMoPart, LinkPart
from smsgw.messages.models import Message

links = table_of(Link)
parts = table_of(LinkPart)
devices = table_of(Device)
users = table_of(User)
messages = table_of(Message)
mo_parts = table_of(LinkMoPart)

ACCEPTED = "accepted"
REJECTED = "rejected"
UNKNOWN = "unknown"
DELIVERED = "delivered"
UNDELIVERED = "undelivered"
CANCELLED = "cancelled"
_UNSETTLED = (ProcessingState.PROCESSED.value, ProcessingState.SENT.value)
T = TypeVar("T")


@dataclass(frozen=True)
class LinkRecord:
    """A link: its sender identity (`device_id`, owner), its settings and its last state."""

    device_id: str
    user_id: int
    name: str | None
    kind: str
    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    system_type: str
    source_addr: str
    source_ton: int
    source_npi: int
    throughput: int
    window: int
    data_coding: int
    bind_mode: str
    state: str
    detail: str | None
    state_at: datetime
    #: Added by the operator for all accounts (docs/links.md); `user_id` holds it.
    all_accounts: bool = False


@dataclass(slots=True)  # not frozen: made per message, and a frozen __init__ costs 4x
class PartJob:
    """A planned part to submit, with what its submit_sm needs from its message."""

    id: int
    message_id: int
    ext_id: str
    phone_number: str
    part: int
    parts: int
    text: str
    with_delivery_report: bool
    #: A data message's payload (base64) and port; None for a text.
    data: str | None = None
    port: int | None = None
    #: The message's `validUntil`, passed on as the submit_sm's validity_period.
    valid_until: datetime | None = None


_COLUMNS = (
    links.c.device_id, devices.c.user_id, devices.c.name, links.c.kind, links.c.host,
    links.c.port, links.c.system_id, links.c.password, links.c.system_type,
    links.c.source_addr, links.c.source_ton, links.c.source_npi, links.c.throughput,
    links.c.window, links.c.data_coding, links.c.bind_mode, links.c.state, links.c.detail,
    links.c.state_at, links.c.all_accounts,
)  # fmt: skip


def _record(row: Any) -> LinkRecord:
    return LinkRecord(*row)


_JOINED = links.join(devices, devices.c.id == links.c.device_id)


async def add(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(links).values(values))


async def of_user(conn: AsyncConnection, user_id: int) -> list[LinkRecord]:
    query = select(*_COLUMNS).select_from(_JOINED).where(devices.c.user_id == user_id)
    return [_record(row) for row in await conn.execute(query.order_by(devices.c.created_at))]


async def every(conn: AsyncConnection) -> list[tuple[str, LinkRecord]]:
    """Every link with its owner's login (the operator's listing)."""
    joined = _JOINED.join(users, users.c.id == devices.c.user_id)
    query = select(users.c.login, *_COLUMNS).select_from(joined)
    rows = await conn.execute(query.order_by(users.c.login, devices.c.created_at))
    return [(row[0], _record(row[1:])) for row in rows]


async def by_id(conn: AsyncConnection, device_id: str) -> LinkRecord | None:
    query = select(*_COLUMNS).select_from(_JOINED).where(links.c.device_id == device_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _record(row)


async def leases(conn: AsyncConnection) -> list[tuple[str, str | None, datetime | None]]:
    """(link, driver, lease_until) of every link."""
    query = select(links.c.device_id, links.c.driver, links.c.lease_until)
    return [(row[0], row[1], row[2]) for row in await conn.execute(query)]


#: A link a driver holds, and until when its lease lasts.
Leased = tuple[LinkRecord, datetime]


async def lease(conn: AsyncConnection, driver: str, now: datetime, until: datetime) -> list[Leased]:
    """Take or renew the lease on every link no other driver holds (or whose driver's lease
    ran out); the links `driver` holds now. A conditional UPDATE: of two drivers, the row
    count says which won."""
    free = or_(links.c.driver.is_(None), links.c.driver == driver, links.c.lease_until < now)
    await conn.execute(update(links).where(free).values(driver=driver, lease_until=until))
    return await leases_of(conn, driver)


async def leases_of(conn: AsyncConnection, driver: str) -> list[Leased]:
    query = select(*_COLUMNS, links.c.lease_until).select_from(_JOINED)
    query = query.where(links.c.driver == driver).order_by(links.c.device_id)
    return [(_record(row[:-1]), row[-1]) for row in await conn.execute(query)]


async def release(conn: AsyncConnection, driver: str) -> None:
    query = update(links).where(links.c.driver == driver)
    await conn.execute(query.values(driver=None, lease_until=None))


async def set_state(
    conn: AsyncConnection, device_id: str, state: str, detail: str | None, now: datetime
) -> None:
    values = {"state": state, "detail": detail, "state_at": now}
    await conn.execute(update(links).where(links.c.device_id == device_id).values(values))


# Parts: the link worker's hot path (claim, submit, answers, receipts) runs as units of
# work (db/engine.py: plain statements, group commit), as a phone's pulls and reports do.

_PARTS = RowInsert(parts)
_STAMP = ColumnWriter(parts.c.submitted_at)
_READ_AT = ColumnReader(messages.c.valid_until)
#: Keys or carrier ids per `IN (...)` (well under either engine's bound parameters).
CHUNK = 500


def _chunks(values: list[T]) -> Iterable[list[T]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


#: The parts of some messages, by their message index. The link is checked on the rows, not
#: in the WHERE: with `device_id = ?` there, SQLite (no statistics) read the link's parts
#: by its (device_id, outcome, id) index, every part the link ever had, on every claim.
_PARTS_OF = "SELECT message_id, device_id FROM link_parts WHERE message_id IN ({})"


async def planned(conn: UnitConnection, device_id: str, message_ids: list[int]) -> set[int]:
    """Which of these messages have parts planned on the link already."""
    found: set[int] = set()
    for chunk in _chunks(message_ids):
        rows = await conn.execute(_PARTS_OF.format(marks(len(chunk))), chunk)
        found.update(message_id for message_id, link in rows if link == device_id)
    return found


async def plan(conn: UnitConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await _PARTS.many(conn, rows)


_UNSENT = (
    "SELECT p.id, p.message_id, m.ext_id, p.phone_number, p.part, p.parts, m.text,"
    " m.with_delivery_report, m.data, m.port, m.valid_until"
    " FROM link_parts p JOIN messages m ON m.id = p.message_id"
    " WHERE p.device_id = ? AND p.outcome IS NULL AND p.submitted_at IS NULL"
    " ORDER BY p.id LIMIT ?"
)


async def unsent(conn: UnitConnection, device_id: str, limit: int) -> list[PartJob]:
    """Parts planned and not submitted, in the order they were planned."""
    jobs = []
    for row in await conn.execute(_UNSENT, (device_id, limit)):
        pk, mid, ext, number, n, total, text, report, data, port, until = row
        valid_until = None if until is None else _READ_AT(conn, until)
        jobs.append(
            PartJob(
                pk, mid, ext, number, n, total, text or "", bool(report), data, port, valid_until
            )
        )
    return jobs


#: The link's lease is still `driver`'s (links.driver, lease_until: `lease`).
_LEASED = "EXISTS (SELECT 1 FROM links WHERE device_id = ? AND driver = ? AND lease_until > ?)"


async def intend(
    conn: UnitConnection, device_id: str, driver: str, ids: list[int], now: datetime
) -> set[int]:
    """Record that these parts' submit_sm are about to go out; the parts it took. Only parts
    still planned on the link are taken: not those of a link deleted meanwhile (its parts
    went with it), nor those cancelled, nor those intended already; and none unless
    `driver` still holds the link's lease (another driver that took the link over fails
    the parts intended before as "not resent": they must not go out)."""
    taken: set[int] = set()
    stamp = _STAMP(conn, now)
    for chunk in _chunks(ids):
        query = (
            "UPDATE link_parts SET submitted_at = ?"  # noqa: S608
            f" WHERE id IN ({marks(len(chunk))}) AND device_id = ?"
            f" AND submitted_at IS NULL AND outcome IS NULL AND {_LEASED} RETURNING id"
        )
        rows = await conn.execute(query, [stamp, *chunk, device_id, device_id, driver, stamp])
        taken.update(row[0] for row in rows.fetchall())
    return taken


async def unintend(conn: UnitConnection, ids: list[int]) -> None:
    """These parts were not sent after all (the carrier refused them for now, or the session
    was down before the submit_sm): planned again."""
    for chunk in _chunks(ids):
        query = (
            "UPDATE link_parts SET submitted_at = NULL"  # noqa: S608
            f" WHERE id IN ({marks(len(chunk))}) AND outcome IS NULL"
        )
        await conn.execute(query, chunk)


async def set_outcomes(
    conn: UnitConnection, outcomes: Iterable[tuple[int, str, str | None, str | None]]
) -> None:
    """(part, outcome, carrier id, error) for parts that had none yet."""
    rows = [(o, smsc_id, error, pk) for pk, o, smsc_id, error in outcomes]
    if rows:
        query = (
            "UPDATE link_parts SET outcome = ?, smsc_id = ?, error = ?"
            " WHERE id = ? AND outcome IS NULL"
        )
        await conn.executemany(query, rows)


async def in_doubt(conn: AsyncConnection, device_id: str) -> list[int]:
    """Parts submitted (intent recorded) whose answer was never recorded."""
    query = select(parts.c.id).where(
        parts.c.device_id == device_id, parts.c.outcome.is_(None),
        parts.c.submitted_at.is_not(None),
    )  # fmt: skip
    return [row[0] for row in await conn.execute(query)]


#: A receipt to apply: the carrier's id of the part, the part's outcome, its error.
Applied = tuple[str, str, str | None]


#: The widths, besides none and the receipt's own, that a carrier pads its ids to with
#: leading zeros: 32 bits in hex and in decimal (SMPP 3.4 Appendix B's 10 digits), 64 bits.
_WIDTHS = (8, 10, 16, 20)
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def spellings(smsc_id: str, bases: bool = True) -> list[str]:
    """Other spellings of a carrier's id for the same message, most alike first: in upper
    or lower case, with its leading zeros stripped or padded to the widths of _WIDTHS; and
    for an id of digits only, or of hex digits only, the same number in the other base (an
    SMSC may answer submit_sm in hex and spell the receipt's id in decimal, or the reverse:
    Kannel's msg-id-type), unless not `bases`. An empty id has none: it names no part. The
    ids are carrier_id's (at most 65 characters), so their numbers are small enough to read."""
    if not smsc_id:
        return []
    found: dict[str, None] = {}

    def spelled(core: str) -> None:
        for text in (core.upper(), core.lower()):
            for width in (0, len(smsc_id), *_WIDTHS):
                found.setdefault(text.rjust(width, "0"))

    spelled(smsc_id.lstrip("0") or "0")
    if bases and smsc_id.isascii() and smsc_id.isdigit():
        spelled(f"{int(smsc_id):x}")
    if bases and _HEX_DIGITS.issuperset(smsc_id):
        spelled(str(int(smsc_id, 16)))
    found.pop(smsc_id, None)
    return list(found)


def _digits(smsc_id: str) -> str:
    return smsc_id.lstrip("0").lower()


async def _parts_named(
    conn: UnitConnection, device_id: str, smsc_ids: list[str]
) -> tuple[set[str], dict[str, tuple[int, int, str]]]:
    """Which of these carrier ids some part of the link has, and the latest part awaiting a
    receipt (accepted) of each: (part, message, recipient) by id."""
    named: set[str] = set()
    latest: dict[str, tuple[int, int, str]] = {}
    for chunk in _chunks(smsc_ids):
        # (the outcome is checked on the rows: with `outcome = ?` in the WHERE, SQLite read
        # the parts by the (device_id, outcome, id) index, every part awaiting a receipt)
        query = (
            "SELECT smsc_id, id, message_id, phone_number, outcome FROM link_parts"  # noqa: S608
            f" WHERE device_id = ? AND smsc_id IN ({marks(len(chunk))}) ORDER BY id DESC"
        )
        for smsc_id, pk, message_id, number, outcome in await conn.execute(
            query, [device_id, *chunk]
        ):
            named.add(smsc_id)
            if outcome == ACCEPTED:
                latest.setdefault(smsc_id, (pk, message_id, number))
    return named, latest


async def receipted(
    conn: UnitConnection,
    device_id: str,
    receipts: list[Applied],
    loose: set[str] | frozenset[str] = frozenset(),
    bases: bool = True,
    crossed: set[str] | None = None,
) -> dict[str, tuple[int, str]]:
    """Apply receipts to the parts the carrier gave their `smsc_id` and that await a receipt
    (accepted: its latest such part, should the carrier reuse ids): (message, recipient) by
    smsc_id, for the ids some accepted part has. A part with a receipt already is left out:
    with ids reused (a carrier's counter that starts again), a receipt that came before the
    answer of the new part with its id is recorded would otherwise be taken by an old part,
    and lost; unmatched, it is tried again (runner.py ORPHAN_SECONDS). Of two receipts for
    one part in `receipts`, the first counts.

    An id of `loose` that no part of the link has as spelled (of any outcome: a second
    receipt for a part must not find another by a spelling) names the part that awaits a
    receipt under one of its other `spellings` (with `bases`, or without), the most alike
    first: many SMSCs spell the receipt's id otherwise than the submit_sm_resp's. Those
    that found their part as the same number in the other base are added to `crossed`.

    One SELECT (two when an id of `loose` is not found as spelled) and one UPDATE per
    outcome and error for each CHUNK receipts."""
    found: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(receipts):
        smsc_ids = sorted({smsc_id for smsc_id, _, _ in chunk})
        named, latest = await _parts_named(conn, device_id, smsc_ids)
        strays = {s: spellings(s, bases) for s in smsc_ids if s in loose and s not in named}
        if strays:
            others = sorted({form for forms in strays.values() for form in forms})
            _, alike = await _parts_named(conn, device_id, others)
            for smsc_id, forms in strays.items():
                form = next((form for form in forms if form in alike), None)
                if form is not None:
                    latest[smsc_id] = alike[form]
                    if crossed is not None and _digits(form) != _digits(smsc_id):
                        crossed.add(smsc_id)
        moves: dict[tuple[str, str | None], list[int]] = {}
        moved: set[int] = set()
        for smsc_id, outcome, error in chunk:
            row = latest.get(smsc_id)
            if row is None:
                continue
            found[smsc_id] = (row[1], row[2])
            if row[0] not in moved:
                moved.add(row[0])
                moves.setdefault((outcome, error), []).append(row[0])
        for (outcome, error), keys in moves.items():
            change = (
                "UPDATE link_parts SET outcome = ?, error = ?"  # noqa: S608
                f" WHERE id IN ({marks(len(keys))}) AND outcome = ?"
            )
            await conn.execute(change, [outcome, error, *keys, ACCEPTED])
    return found


async def pairs_of(conn: UnitConnection, ids: list[int]) -> set[tuple[int, str]]:
    """(message, recipient) of these parts."""
    found: set[tuple[int, str]] = set()
    for chunk in _chunks(ids):
        query = f"SELECT message_id, phone_number FROM link_parts WHERE id IN ({marks(len(chunk))})"  # noqa: S608
        found.update((row[0], row[1]) for row in await conn.execute(query, chunk))
    return found


async def outcomes_of(
    conn: UnitConnection, message_ids: list[int]
) -> dict[tuple[int, str], list[tuple[str | None, str | None]]]:
    """Every part's (outcome, error) of these messages, by (message, recipient), each
    recipient's parts in the order they were planned."""
    found: dict[tuple[int, str], list[tuple[str | None, str | None]]] = {}
    for chunk in _chunks(sorted(message_ids)):
        query = (
            "SELECT message_id, phone_number, outcome, error FROM link_parts"  # noqa: S608
            f" WHERE message_id IN ({marks(len(chunk))}) ORDER BY id"
        )
        for mid, number, outcome, error in await conn.execute(query, chunk):
            found.setdefault((mid, number), []).append((outcome, error))
    return found


async def open_pairs(conn: AsyncConnection, device_id: str) -> set[tuple[int, str]]:
    """(message, recipient) of the parts of every message the link holds that is not
    settled yet (Processed or Sent)."""
    held = and_(
        messages.c.id == parts.c.message_id,
        messages.c.device_id == device_id,
        messages.c.state.in_(_UNSETTLED),
    )
    query = select(parts.c.message_id, parts.c.phone_number).where(
        parts.c.device_id == device_id, held
    )
    return {(row[0], row[1]) for row in await conn.execute(query.distinct())}


async def ext_ids(conn: UnitConnection, message_ids: list[int]) -> dict[int, tuple[str, int]]:
    """(ext_id, account) of these messages."""
    found: dict[int, tuple[str, int]] = {}
    for chunk in _chunks(message_ids):
        query = f"SELECT id, ext_id, user_id FROM messages WHERE id IN ({marks(len(chunk))})"  # noqa: S608
        found.update((row[0], (row[1], row[2])) for row in await conn.execute(query, chunk))
    return found


async def owners(conn: UnitConnection, message_ids: list[int]) -> dict[int, int]:
    """The account of each of these messages."""
    return {key: owner for key, (_, owner) in (await ext_ids(conn, message_ids)).items()}


async def last_sent_to(conn: UnitConnection, device_id: str, numbers: list[str]) -> int | None:
    """The account of the latest message the link took for one of these numbers (the same
    number as stored and as an MO may give it); None when it took none."""
    query = (
        "SELECT m.user_id FROM recipients r JOIN messages m ON m.id = r.message_id"  # noqa: S608
        f" WHERE r.phone_number IN ({marks(len(numbers))}) AND m.device_id = ?"
        " ORDER BY r.message_id DESC LIMIT 1"
    )
    row = (await conn.execute(query, [*numbers, device_id])).fetchone()
    return None if row is None else int(row[0])


async def cancel_unsent(conn: UnitConnection, device_id: str, message_id: int) -> bool:
    """Cancel a message's parts on the link if none was submitted yet; whether it was."""
    sent = (
        "SELECT id FROM link_parts WHERE device_id = ? AND message_id = ?"
        " AND submitted_at IS NOT NULL LIMIT 1"
    )
    if (await conn.execute(sent, (device_id, message_id))).fetchone() is not None:
        return False
    cancel = "UPDATE link_parts SET outcome = ? WHERE device_id = ? AND message_id = ?"
    await conn.execute(cancel, (CANCELLED, device_id, message_id))
    return True


# The parts of a long MO, until all are here, and as long again after they were joined
# (links/service.py `received`).

#: One SMS in parts: (link, sender, reference, total).
MoKey = tuple[str, str, int, int]
#: A part kept: (number, data_coding, user data, received at).
MoPart = tuple[int, int, bytes, datetime]


def _of_mo(key: MoKey) -> Any:
    device_id, sender, reference, total = key
    return and_(
        mo_parts.c.device_id == device_id, mo_parts.c.sender == sender,
        mo_parts.c.reference == reference, mo_parts.c.total == total,
    )  # fmt: skip


async def keep_mo_part(
    conn: AsyncConnection, key: MoKey, number: int, data_coding: int, body: bytes, at: datetime
) -> int | None:
    """Keep one part (a part the carrier delivers again is kept once); how many parts of
    its SMS wait now. None when its SMS was joined already (`take_mo_parts`) and the part
    repeats one of the joined parts (the same number, coding and user data): not kept. A
    part that repeats none begins another SMS (the sender used the reference again): the
    joined parts are forgotten first."""
    query = select(mo_parts.c.id, mo_parts.c.seq, mo_parts.c.joined_at).where(_of_mo(key))
    rows = (await conn.execute(query)).all()
    if any(joined is not None for _, _, joined in rows):
        same = [pk for pk, seq, _ in rows if seq == number]
        if same and await _repeats(conn, same[0], data_coding, body):
            return None
        await conn.execute(delete(mo_parts).where(_of_mo(key)))
        rows = []
    if any(seq == number for _, seq, _ in rows):
        return len(rows)
    device_id, sender, reference, total = key
    await conn.execute(insert(mo_parts).values(
        device_id=device_id, sender=sender, reference=reference, total=total, seq=number,
        data_coding=data_coding, body=body, received_at=at,
    ))  # fmt: skip
    return len(rows) + 1


async def _repeats(conn: AsyncConnection, pk: int, data_coding: int, body: bytes) -> bool:
    """Whether part `pk` has this coding and user data."""
    query = select(mo_parts.c.data_coding, mo_parts.c.body).where(mo_parts.c.id == pk)
    row = (await conn.execute(query)).first()
    return row is not None and row[0] == data_coding and bytes(row[1]) == body


async def take_mo_parts(conn: AsyncConnection, key: MoKey, at: datetime) -> list[MoPart]:
    """Mark the waiting parts of one SMS joined at `at` (kept until `forget_mo_parts`, for
    `keep_mo_part` to tell a repeat); those marked (none when another took them first)."""
    query = (
        update(mo_parts)
        .where(_of_mo(key), mo_parts.c.joined_at.is_(None))
        .values(joined_at=at)
        .returning(mo_parts.c.seq, mo_parts.c.data_coding, mo_parts.c.body, mo_parts.c.received_at)
    )
    return [(row[0], row[1], bytes(row[2]), row[3]) for row in await conn.execute(query)]


async def forget_mo_parts(conn: AsyncConnection, device_ids: list[str], before: datetime) -> None:
    """Remove the parts of these links' SMS joined before `before` (by the received_at index:
    a part is joined after it came)."""
    await conn.execute(
        delete(mo_parts).where(
            mo_parts.c.device_id.in_(device_ids), mo_parts.c.received_at < before,
            mo_parts.c.joined_at < before,
        )
    )  # fmt: skip


async def stale_mo(
    conn: AsyncConnection, device_ids: Collection[str], before: datetime, limit: int
) -> list[tuple[MoKey, bool]]:
    """The SMS in parts of these links whose first part came before `before` (at most
    `limit`), each with whether it was joined: those still waiting for the rest, and those
    joined before `before`. (A part is joined after it came: the received_at index finds
    both.) Only these links': those of links no process runs would fill the limit for ever."""
    key = (mo_parts.c.device_id, mo_parts.c.sender, mo_parts.c.reference, mo_parts.c.total)
    due = or_(mo_parts.c.joined_at.is_(None), mo_parts.c.joined_at < before)
    query = select(*key, func.count(mo_parts.c.joined_at)).where(
        mo_parts.c.device_id.in_(device_ids), mo_parts.c.received_at < before, due
    )
    rows = await conn.execute(query.group_by(*key).limit(limit))
    return [((row[0], row[1], row[2], row[3]), row[4] > 0) for row in rows]
