"""What a link is doing, for people and monitoring (the dashboard's links page, `GET /links`,
`/metrics`): its session's state, its queue depth and the parts it submitted of late.

Queue depth has three figures (docs/links.md, "Watching a link"):

- `waiting`: the owner's messages (every account's, for a link for all accounts) this link
  could take now: queued (no sender holds them), unpinned or pinned to this link, due
  (`scheduleAt` passed) and unexpired; counted up to `COUNT_CAP`. Phones of the account may
  take them first.
- `planned`: SMS parts the link has taken (planned) whose intent is not recorded yet.
- `in_flight`: parts submitted (or their intent recorded, ahead of the window) whose answer
  (`submit_sm_resp`) is not recorded yet; at most about twice the link's window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.engine import Database
from smsgw.domain import clock
from smsgw.domain.states import ProcessingState
from smsgw.links import repository
from smsgw.links.errors import UnknownLink
from smsgw.links.repository import LinkRecord, messages, parts

#: The queue is counted up to this many messages (a long queue costs no more).
COUNT_CAP = 10_000
#: "Of late": the parts submitted in this last stretch of time.
RECENT = timedelta(hours=24)
#: The parts submitted in this last stretch, for the rate the link sends at.
RATE_WINDOW = timedelta(minutes=1)
BOUND = "bound"


@dataclass(frozen=True)
class Recent:
    """The parts submitted since `since`, by what became of them: `accepted` (awaiting its
    receipt, or sent without asking for one), `delivered` and `undelivered` (the carrier's
    receipts), `rejected` (the SMSC refused it), `no_answer` (the session ended first);
    `last_minute`: those submitted in the last minute."""

    since: datetime
    submitted: int = 0
    accepted: int = 0
    delivered: int = 0
    undelivered: int = 0
    rejected: int = 0
    no_answer: int = 0
    last_minute: int = 0

    @property
    def receipts(self) -> int:
        return self.delivered + self.undelivered


@dataclass(frozen=True)
class LinkStatus:
    link: LinkRecord
    waiting: int
    planned: int
    in_flight: int
    recent: Recent

    @property
    def up(self) -> bool:
        return self.link.state == BOUND


async def of_user(db: Database, user_id: int) -> list[LinkStatus]:
    """The status of each of `user_id`'s links, oldest link first."""
    async with db.read() as conn:
        return [await _status(conn, link) for link in await repository.of_user(conn, user_id)]


async def one(db: Database, user_id: int, device_id: str) -> LinkStatus:
    """The status of `user_id`'s link `device_id`; UnknownLink when it is no link of theirs."""
    async with db.read() as conn:
        link = await repository.by_id(conn, device_id)
        if link is None or link.user_id != user_id:
            raise UnknownLink
        return await _status(conn, link)


@dataclass(frozen=True)
class Gauge:
    """A link as /metrics shows it (read at scrape; the counters are the runner's)."""

    device_id: str
    up: bool
    waiting: int
    planned: int
    in_flight: int


async def gauges(db: Database) -> list[Gauge]:
    """Every link's state and queue depth (a few indexed counts a link)."""
    async with db.read() as conn:
        found = []
        for _, link in await repository.every(conn):
            planned, in_flight = await _held(conn, link.device_id)
            waiting = await _waiting(conn, link, clock.now())
            found.append(Gauge(link.device_id, link.state == BOUND, waiting, planned, in_flight))
        return found


async def _status(conn: AsyncConnection, link: LinkRecord) -> LinkStatus:
    now = clock.now()
    planned, in_flight = await _held(conn, link.device_id)
    waiting = await _waiting(conn, link, now)
    return LinkStatus(link, waiting, planned, in_flight, await _recent(conn, link, now))


async def _waiting(conn: AsyncConnection, link: LinkRecord, now: datetime) -> int:
    queued = and_(
        messages.c.device_id.is_(None),
        or_(messages.c.released_from.is_(None), messages.c.released_from != link.device_id),
    )
    pinned = and_(messages.c.device_id == link.device_id, messages.c.claimed_at.is_(None))
    mine = true() if link.all_accounts else messages.c.user_id == link.user_id
    query = (
        select(messages.c.id)
        .where(
            mine,
            messages.c.state == ProcessingState.PENDING.value,
            or_(queued, pinned),
            or_(messages.c.valid_until.is_(None), messages.c.valid_until > now),
            or_(messages.c.schedule_at.is_(None), messages.c.schedule_at <= now),
        )
        .limit(COUNT_CAP)
    )
    return int(await conn.scalar(select(func.count()).select_from(query.subquery())) or 0)


async def _held(conn: AsyncConnection, device_id: str) -> tuple[int, int]:
    """(planned, in flight): the link's parts without an outcome, not submitted / submitted."""
    submitted = parts.c.submitted_at.is_not(None)
    query = select(func.count().filter(~submitted), func.count().filter(submitted)).where(
        parts.c.device_id == device_id, parts.c.outcome.is_(None)
    )
    row = (await conn.execute(query)).one()
    return int(row[0] or 0), int(row[1] or 0)


async def _recent(conn: AsyncConnection, link: LinkRecord, now: datetime) -> Recent:
    since = now - RECENT
    minute = case((parts.c.submitted_at >= now - RATE_WINDOW, 1), else_=0)
    query = (
        select(parts.c.outcome, func.count(), func.sum(minute))
        .where(and_(parts.c.device_id == link.device_id, parts.c.submitted_at >= since))
        .group_by(parts.c.outcome)
    )
    counts: dict[str | None, int] = {}
    last_minute = 0
    for outcome, count, recent in await conn.execute(query):
        counts[outcome] = int(count)
        last_minute += int(recent or 0)
    return Recent(
        since, sum(counts.values()), counts.get(repository.ACCEPTED, 0),
        counts.get(repository.DELIVERED, 0), counts.get(repository.UNDELIVERED, 0),
        counts.get(repository.REJECTED, 0), counts.get(repository.UNKNOWN, 0), last_minute,
    )  # fmt: skip
