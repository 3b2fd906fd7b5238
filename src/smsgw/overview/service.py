"""The overview of an account: what became of its messages per hour and per day, its queue,
each phone's volume, and its recent failures.

A message counts once, in the hour (UTC) it was accepted, under the state it is in now when
that state is an outcome: Sent (every recipient sent, no delivery report for all of them
yet, or some delivered and some failed), Delivered (every recipient delivered) or Failed
(every recipient failed), as `domain.states.derive` makes a message's state from its
recipients'. The delivery rate is Delivered / (Delivered + Failed) over those messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from smsgw.db.engine import Database
from smsgw.domain import clock
from smsgw.overview import repository
from smsgw.overview.repository import FailedRecipient

HOURS = 24
DAYS = 30
#: How many failed recipients the overview lists.
FAILURES = 20


@dataclass
class Bucket:
    """One hour or day: its start (UTC) and how many messages ended in each outcome."""

    start: datetime
    sent: int = 0
    delivered: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.delivered + self.failed


def delivery_rate(buckets: list[Bucket]) -> float | None:
    """Delivered / (Delivered + Failed) over `buckets`; None when neither happened."""
    delivered = sum(b.delivered for b in buckets)
    failed = sum(b.failed for b in buckets)
    return delivered / (delivered + failed) if delivered + failed else None


@dataclass(frozen=True)
class Queue:
    """The account's Pending messages, those no phone holds yet, and the oldest one's
    acceptance time (None when none is Pending)."""

    pending: int
    waiting: int
    oldest: datetime | None


@dataclass
class Overview:
    now: datetime
    hours: list[Bucket]
    days: list[Bucket]
    queue: Queue
    failures: list[FailedRecipient] = field(default_factory=list)

    @property
    def rate_24h(self) -> float | None:
        return delivery_rate(self.hours)

    @property
    def rate_30d(self) -> float | None:
        return delivery_rate(self.days)


def hour_starts(now: datetime) -> list[datetime]:
    """The starts of the HOURS hours up to `now`'s (which is the last, under way)."""
    current = now.replace(minute=0, second=0, microsecond=0)
    return [current - timedelta(hours=HOURS - 1 - i) for i in range(HOURS)]


def day_starts(now: datetime) -> list[datetime]:
    """The starts of the DAYS days up to `now`'s (UTC; today is the last, under way)."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return [today - timedelta(days=DAYS - 1 - i) for i in range(DAYS)]


def _ranges(buckets: list[Bucket], step: timedelta) -> list[tuple[datetime, datetime]]:
    return [(b.start, b.start + step) for b in buckets]


def _fill(buckets: list[Bucket], counted: list[dict[str, int]]) -> None:
    for bucket, counts in zip(buckets, counted, strict=True):
        bucket.sent, bucket.delivered, bucket.failed = (
            counts["Sent"], counts["Delivered"], counts["Failed"]
        )  # fmt: skip


async def overview(db: Database, user_id: int) -> Overview:
    """The owner's overview now (one read transaction)."""
    now = clock.now()
    hours = [Bucket(start) for start in hour_starts(now)]
    days = [Bucket(start) for start in day_starts(now)]
    ranges = _ranges(hours, timedelta(hours=1)) + _ranges(days, timedelta(days=1))
    async with db.read() as conn:
        counted = await repository.outcomes(conn, user_id, ranges)
        pending, waiting = await repository.pending(conn, user_id)
        oldest = await repository.oldest_pending(conn, user_id) if pending else None
        failures = await repository.recent_failures(conn, user_id, FAILURES)
    _fill(hours, counted[: len(hours)])
    _fill(days, counted[len(hours) :])
    return Overview(now, hours, days, Queue(pending, waiting, oldest), failures)


@dataclass(frozen=True)
class Volume:
    """How many messages a phone took that were accepted in the last hour and 24 hours."""

    last_hour: int
    last_day: int


async def volumes(db: Database, user_id: int, device_ids: list[str]) -> dict[str, Volume]:
    """The volume of each of the owner's phones `device_ids` (one read transaction)."""
    now = clock.now()
    found = {}
    async with db.read() as conn:
        for device_id in device_ids:
            day, hour = await repository.volume(
                conn, user_id, device_id, now - timedelta(hours=24), now - timedelta(hours=1)
            )
            found[device_id] = Volume(hour, day)
    return found
