"""Routing rules: which of an account's senders, its phones or its carrier links, may claim
which of its queued messages (docs/links.md, "Routing rules").

A rule is read in the claim's own unit of work and becomes a condition of the claim's
choice (`condition`), for phones and links alike; so every claim follows the rule as it
stands when the claim runs, and a message is still won by one sender only (the claim's
conditional UPDATE, routing/repository.py `claim`). A message pinned with `deviceId` is not
in the queue: no rule applies to it.

The modes, for a queued message:

- `shared` (no rule set): any phone or link of the account takes it, whoever claims first;
- `phones`: phones only;
- `links`: links only;
- `prefix`: links when every recipient's number starts with one of the rule's prefixes,
  phones otherwise;
- `fallback`: phones; links too while no phone of the account is online (heard from
  within SMSGW_ONLINE_WINDOW_SECONDS, as the database holds its last-seen time).

With `failover_after` N > 0 (not in `shared`), a message that has waited N seconds since it
was due (its creation, or its `scheduleAt`) may be taken by the kind of sender the mode
does not give it to as well: links in `phones` and `fallback`, phones in `links`, the other
kind in `prefix`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from smsgw.db.engine import ColumnWriter, Database, UnitConnection
from smsgw.domain import clock
from smsgw.domain.errors import InvalidInput
from smsgw.events.user_feed import notify
from smsgw.messages import repository as stored


class Mode(StrEnum):
    SHARED = "shared"
    PHONES = "phones"
    LINKS = "links"
    PREFIX = "prefix"
    FALLBACK = "fallback"


MAX_PREFIXES = 100
#: The longest failover delay: a week (a message waiting longer has usually expired).
MAX_FAILOVER_SECONDS = 7 * 86400
#: A prefix of an E.164 number: `+` and 1 to 15 digits.
_PREFIX = re.compile(r"\+[0-9]{1,15}")
_MODES = ", ".join(mode.value for mode in Mode)

_at = ColumnWriter(stored.messages.c.created_at)  # every timestamp column has this type


@dataclass(frozen=True)
class Rule:
    mode: Mode = Mode.SHARED
    prefixes: tuple[str, ...] = ()
    failover_after: int = 0


SHARED = Rule()


def checked(mode: object, prefixes: object, failover_after: object) -> Rule:
    """The rule these values make; InvalidInput naming the field of the first bad one."""
    if not isinstance(mode, str) or mode not in {m.value for m in Mode}:
        raise InvalidInput(f"mode: must be one of {_MODES}")
    kind = Mode(mode)
    seconds = _seconds(failover_after)
    found = _prefixes(prefixes)
    if kind == Mode.PREFIX and not found:
        raise InvalidInput("prefixes: mode prefix needs at least one prefix, such as +44")
    if kind != Mode.PREFIX and found:
        raise InvalidInput(f"prefixes: only mode prefix uses prefixes, not mode {mode}")
    if kind == Mode.SHARED and seconds:
        raise InvalidInput(
            "failoverAfter: in mode shared phones and links take every message at once; "
            "for links after N seconds, use mode phones"
        )
    return Rule(kind, found, seconds)


def _seconds(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("failoverAfter: must be a whole number of seconds")
    if not 0 <= value <= MAX_FAILOVER_SECONDS:
        raise InvalidInput(f"failoverAfter: must be from 0 to {MAX_FAILOVER_SECONDS} seconds")
    return value


def _prefixes(values: object) -> tuple[str, ...]:
    if not isinstance(values, list | tuple):
        raise InvalidInput('prefixes: must be a list of number prefixes, such as ["+44"]')
    if len(values) > MAX_PREFIXES:
        raise InvalidInput(f"prefixes: at most {MAX_PREFIXES}")
    found: list[str] = []
    for n, value in enumerate(values):
        if not isinstance(value, str) or not _PREFIX.fullmatch(value):
            raise InvalidInput(f"prefixes[{n}]: must be + and 1 to 15 digits, such as +44")
        if value not in found:
            found.append(value)
    return tuple(found)


def of_row(row: Any) -> Rule:
    """The rule of a `routing_rules` row read as (mode, prefixes, failover_after), any of
    them None when the account has no row (`shared`)."""
    if row is None or row[0] is None:
        return SHARED
    return Rule(Mode(row[0]), tuple(row[1].split()), int(row[2]))


# The claim's condition.

_FALSE = "1 = 0"
_WAITED = "coalesce(schedule_at, created_at) <= ?"
#: Some recipient's number starts with none of the prefixes (the LIKE patterns; a prefix is
#: `+` and digits, so it holds no wildcard).
_UNMATCHED = "EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = messages.id AND NOT ({}))"
_NO_PHONE_ONLINE = (
    "NOT EXISTS (SELECT 1 FROM devices d WHERE d.user_id = ? AND d.last_seen > ?"
    " AND NOT EXISTS (SELECT 1 FROM links l WHERE l.device_id = d.id))"
)


@dataclass(frozen=True)
class Claimer:
    """Who claims: a phone or a link of `user_id`; for a link, how recently a phone must
    have been heard from to count as online (mode `fallback`)."""

    user_id: int
    link: bool
    online_window: timedelta


def condition(
    conn: UnitConnection, rule: Rule, claimer: Claimer, now: datetime
) -> tuple[str, list[Any]] | None:
    """The condition (and its parameters) on `messages` that the rule puts on what the
    claimer may take from the queue; None when it may take anything."""
    parts: list[tuple[str, list[Any]]] = []
    mine = _favours(conn, rule, claimer, now)
    if mine is None:
        return None
    parts.append(mine)
    if rule.failover_after:
        waited = now - timedelta(seconds=rule.failover_after)
        parts.append((_WAITED, [_at(conn, waited)]))
    sql = " OR ".join(f"({text})" for text, _ in parts)
    return f"({sql})", [value for _, params in parts for value in params]


def _favours(
    conn: UnitConnection, rule: Rule, claimer: Claimer, now: datetime
) -> tuple[str, list[Any]] | None:
    """What the mode itself gives the claimer: None for everything, else the condition."""
    mode = rule.mode
    if mode == Mode.SHARED or (mode in (Mode.PHONES, Mode.FALLBACK) and not claimer.link):
        return None
    if mode == Mode.LINKS:
        return None if claimer.link else (_FALSE, [])
    if mode == Mode.PHONES:
        return _FALSE, []
    if mode == Mode.PREFIX:
        like = " OR ".join(["r.phone_number LIKE ?"] * len(rule.prefixes))
        unmatched = _UNMATCHED.format(like)
        patterns: list[Any] = [prefix + "%" for prefix in rule.prefixes]
        return (f"NOT {unmatched}" if claimer.link else unmatched), patterns
    seen = _at(conn, now - claimer.online_window)  # FALLBACK, a link
    return _NO_PHONE_ONLINE, [claimer.user_id, seen]


# Reading and setting an account's rule.


async def of_owner(conn: UnitConnection, user_id: int) -> Rule:
    query = "SELECT mode, prefixes, failover_after FROM routing_rules WHERE user_id = ?"
    return of_row((await conn.execute(query, (user_id,))).fetchone())


async def get(db: Database, user_id: int) -> Rule:
    """The account's rule (`shared` when it never set one)."""
    return await db.read_unit(lambda conn: of_owner(conn, user_id))


async def put(db: Database, user_id: int, rule: Rule) -> Rule:
    """Set the account's rule; claims from then on follow it (a message already claimed
    stays with its sender)."""
    query = (
        "INSERT INTO routing_rules (user_id, mode, prefixes, failover_after, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET mode = excluded.mode,"
        " prefixes = excluded.prefixes, failover_after = excluded.failover_after,"
        " updated_at = excluded.updated_at"
    )

    async def write(conn: UnitConnection) -> None:
        values = (user_id, rule.mode.value, " ".join(rule.prefixes), rule.failover_after)
        await conn.execute(query, (*values, _at(conn, clock.now())))

    await db.write_unit(write)
    notify(db, user_id)  # the account's link runners look at the queue again at once
    return rule
