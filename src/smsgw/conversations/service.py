"""Conversation use cases: the list of conversations (one per phone number, newest activity
first), search, and one conversation: the messages sent to a number and those received from
it, newest first. A reply is a send (messages.service.send), as from the send page.

Bounds, so that a page costs the same with a million messages as with a hundred: the list
reads the owner's latest WINDOW messages sent and WINDOW received (from indexes), a search
the latest SEARCH_WINDOW of each (their texts); a number typed in full also finds an older
conversation, through the indexes by number. Counts stop at COUNT_CAP; a conversation pages
through its newest MAX_DEPTH messages of each kind.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberFormat

from smsgw.conversations import repository
from smsgw.conversations.repository import Item, Mark, Search
from smsgw.db.engine import Database
from smsgw.domain.errors import InvalidInput
from smsgw.domain.phones import match_key

WINDOW = 2000
SEARCH_WINDOW = 5000
COUNT_CAP = 10_000
MAX_DEPTH = 5000
#: The longest search (longer text is cut here).
MAX_SEARCH = 100
E164 = re.compile(r"\+[1-9][0-9]{5,14}")
#: A search that may be (part of) a phone number: digits and what people write between them.
NUMBERISH = re.compile(r"[0-9+()./ -]+")


@dataclass(frozen=True)
class Conversation:
    """A number's conversation in the list: its newest message (the newest matching one in a
    search) and how many were sent to it and received from it (each up to COUNT_CAP)."""

    number: str
    last: Item
    sent: int
    received: int


@dataclass(frozen=True)
class Thread:
    """A page of one conversation, newest first; `more`: older messages follow."""

    number: str
    items: list[Item]
    sent: int
    received: int
    more: bool


@functools.lru_cache(maxsize=4096)
def key_of(number: str, region: str | None) -> str:
    """The number a stored sender or recipient belongs to (a conversation's own number, and
    its URL): E.164 when it reads as a phone number (a national form in `region`), else the
    text as stored, trimmed (a sender name such as "BANK")."""
    text = number.strip()
    return text if E164.fullmatch(text) else match_key(text, region)


def forms_of(number: str, region: str | None) -> list[str]:
    """The stored forms that belong to the conversation `number`: itself and, for a number
    of `region`, its national forms (`2025550100`, `(202) 555-0100` in the US), as a phone
    may report a sender."""
    forms = {number}
    if region and E164.fullmatch(number):
        try:
            parsed = phonenumbers.parse(number)
        except phonenumbers.NumberParseException:
            return [number]
        if phonenumbers.region_code_for_number(parsed) == region:
            national = phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL)
            forms |= {national, re.sub(r"[^0-9]", "", national)}
    return sorted(forms)


def search_of(query: str) -> Search | None:
    """What a search box's text looks for: the text within messages' texts and, when it is
    made of digits (and + ( ) . / - spaces), those digits within numbers."""
    text = query.strip()[:MAX_SEARCH]
    if not text:
        return None
    digits = re.sub(r"[^0-9]", "", text) if NUMBERISH.fullmatch(text) else ""
    return Search(text=text, digits=digits or None)


def full_number(query: str, region: str | None) -> str | None:
    """The number a search names in full (E.164, or national in `region`), else None."""
    text = query.strip()[:MAX_SEARCH]
    if not NUMBERISH.fullmatch(text) or len(re.sub(r"[^0-9]", "", text)) < 6:
        return None
    key = match_key(text, region)
    return key if E164.fullmatch(key) else None


def _newest_by_number(marks: list[Mark], region: str | None) -> dict[str, Mark]:
    newest: dict[str, Mark] = {}
    for mark in sorted(marks, key=lambda m: m.at, reverse=True):
        newest.setdefault(key_of(mark.number, region), mark)
    return newest


async def conversations(
    db: Database, region: str | None, user_id: int, query: str, offset: int, limit: int
) -> tuple[list[Conversation], int]:
    """A page of the owner's conversations, newest activity first, and how many there are;
    with `query`, only those it finds (see `search_of`, `full_number`)."""
    search = search_of(query)
    exact = full_number(query, region)
    async with db.read() as conn:
        window = WINDOW if search is None else SEARCH_WINDOW
        marks = await repository.latest_sent(conn, user_id, window, search)
        marks += await repository.latest_received(conn, user_id, window, search)
        newest = _newest_by_number(marks, region)
        if exact is not None and exact not in newest:  # older than the window
            older = await repository.newest_marks(conn, user_id, forms_of(exact, region))
            newest.update(_newest_by_number(older, region))
        ordered = sorted(newest.items(), key=lambda pair: pair[1].at, reverse=True)
        shown = ordered[offset : offset + limit]
        items = await repository.items_of(conn, user_id, [mark for _, mark in shown])
        forms = {number: forms_of(number, region) for number, _ in shown}
        counted = await repository.counts(conn, user_id, forms, COUNT_CAP)
    # A message deleted since it was listed (PostgreSQL reads each statement afresh) is left out.
    page = [
        Conversation(number, items[mark], *counted[number])
        for number, mark in shown
        if mark in items
    ]
    return page, len(ordered)


async def thread(
    db: Database, region: str | None, user_id: int, number: str, offset: int, limit: int
) -> Thread:
    """A page of the owner's conversation with `number` (as `key_of` gives it): messages
    sent to it, each with that recipient's state, and received from it, newest first."""
    if offset > MAX_DEPTH:
        raise InvalidInput(
            f"page: a conversation pages through its newest {MAX_DEPTH} messages; "
            "export older ones as CSV"
        )
    forms = forms_of(number, region)
    depth = offset + limit + 1
    async with db.read() as conn:
        items = await repository.sent_to(conn, user_id, forms, depth)
        items += await repository.received_from(conn, user_id, forms, depth)
        counted = await repository.counts(conn, user_id, {number: forms}, COUNT_CAP)
    sent, received = counted[number]
    items.sort(key=lambda item: item.at, reverse=True)
    more = len(items) > offset + limit
    return Thread(number, items[offset : offset + limit], sent, received, more)
