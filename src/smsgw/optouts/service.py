"""Opt-out use cases: a recipient's stop or start word, list, add and remove by hand.

The send path reads the list itself, in the unit of work that stores a message
(messages/service.py): a recipient listed then fails with `OPTED_OUT` and never reaches a
phone. A number is listed as the send path compares recipients (domain/phones.match_key),
so "+1 202 555 0100" and, with `SMSGW_DEFAULT_REGION=US`, "12025550100" are one entry.
"""

from __future__ import annotations

import functools

from smsgw.db.engine import Database, UnitConnection
from smsgw.domain import clock
from smsgw.domain.errors import NotFound
from smsgw.domain.keywords import Keywords
from smsgw.domain.phones import match_key, normalize
from smsgw.optouts import repository
from smsgw.optouts.repository import OptOutRecord

#: The error of a recipient on the list when its message was accepted.
OPTED_OUT = "recipient opted out"
SMS, API, DASHBOARD = "sms", "api", "dashboard"


@functools.lru_cache(maxsize=8)
def keywords(extra: str) -> Keywords:
    """The words in force with `SMSGW_OPT_OUT_WORDS` = `extra` (read once per value)."""
    return Keywords.with_extra(extra)


async def from_sms_unit(
    conn: UnitConnection,
    user_id: int,
    sender: str | None,
    text: str | None,
    words: Keywords,
    default_region: str | None,
) -> bool | None:
    """A received SMS, in the transaction that stores it: a stop word lists its sender for
    the owner, a start word takes it off. True: opted out, False: opted in, None: neither."""
    meaning = words.meaning(text)
    if meaning is None or not sender or not sender.strip():
        return None
    number = match_key(sender, default_region)
    if meaning:
        await repository.add_unit(conn, user_id, number, SMS, clock.now())
    else:
        await repository.remove_unit(conn, user_id, number)
    return meaning


async def add(
    db: Database, default_region: str | None, user_id: int, raw: str, source: str
) -> tuple[OptOutRecord, bool]:
    """List a number (read as `POST /messages` reads recipients: InvalidInput when it would
    refuse it); the entry, and whether it is new (a listed number keeps its first entry)."""
    number = normalize(raw, default_region, "phoneNumber")
    async with db.write() as conn:
        added = await repository.add(conn, user_id, number, source, clock.now())
        record = await repository.find(conn, user_id, number)
    assert record is not None
    return record, added


async def remove(db: Database, default_region: str | None, user_id: int, raw: str) -> None:
    """Take a number off the list (written in any form that reads as the listed one);
    NotFound when it is not listed."""
    async with db.write() as conn:
        if not await repository.remove(conn, user_id, match_key(raw, default_region)):
            raise NotFound("phone number not on the opt-out list")


async def list_page(
    db: Database, user_id: int, limit: int, offset: int
) -> tuple[list[OptOutRecord], int]:
    """One page of the owner's list, newest first, and how many are listed."""
    async with db.read() as conn:
        return await repository.page(conn, user_id, limit, offset)
