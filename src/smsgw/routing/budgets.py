"""Per-phone budgets: how many SMS parts a phone is handed per minute and per day.

Android lets an app send 30 SMS parts a minute before it asks the user for permission on the
phone's screen (an unattended phone then stalls or fails them), and carriers and plans limit
SMS per day. So a pull hands a phone only the parts its budget has left in the current UTC
minute and day (docs/routing.md, "Budgets"):

- a message costs its parts times its recipients (`message_parts`), counted when it is
  accepted (`messages.parts`);
- in a pull, messages are taken in pull order while the running cost fits what is left of
  both windows; the first that does not fit ends the pull's share (the rest wait for another
  phone with budget left, or for this phone's next window). A message larger than a whole
  window's limit is taken alone when that window is untouched, so it is never stranded;
- expedited messages (priority 100 and up, which the app sends "skipping the phone's
  limits") are taken whatever is left, and count like any other;
- pinned messages take their phone's budget before queued ones, and wait for it.

The counts live in the database (`phone_usage`, one row per phone), read and written in the
pull's unit of work under the phone's lock, so several server processes and nodes share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from smsgw.config import Settings
from smsgw.db.engine import Database, UnitConnection
from smsgw.domain import clock
from smsgw.messages.parts import count_parts
from smsgw.messages.repository import MessageRecord
from smsgw.optouts.service import OPTED_OUT

#: Priority from which a message skips the budget, as it skips the app's own limits.
EXPEDITED = 100
#: "No bound" in the budget's arithmetic and statements (far above any real count).
UNBOUNDED = 1 << 40
MINUTE_SECONDS = 60
DAY_SECONDS = 86400


def message_parts(text: str | None, recipients: int) -> int:
    """What sending a message costs: its text's parts (a data message: one) per recipient."""
    return (1 if text is None else count_parts(text)) * recipients


def minute_of(now: datetime) -> int:
    """The UTC minute `now` falls in, as whole minutes since the Unix epoch."""
    return int(now.timestamp()) // MINUTE_SECONDS


def day_of(now: datetime) -> int:
    """The UTC day `now` falls in, as whole days since the Unix epoch."""
    return int(now.timestamp()) // DAY_SECONDS


@dataclass(frozen=True)
class Limits:
    """Parts per minute and per day; 0 is no limit. The server's defaults, or a phone's own."""

    per_minute: int
    per_day: int

    def own(self, per_minute: int | None, per_day: int | None) -> Limits:
        """The limits in force for a phone whose own settings are these (None: default)."""
        return Limits(
            self.per_minute if per_minute is None else per_minute,
            self.per_day if per_day is None else per_day,
        )


NO_LIMITS = Limits(0, 0)


def _room(limit: int, used: int) -> int:
    return UNBOUNDED if limit == 0 else max(0, limit - used)


@dataclass(frozen=True)
class Budget:
    """A phone's limits in force and what it was handed in the current minute and day."""

    limits: Limits
    minute_used: int
    day_used: int

    @property
    def limited(self) -> bool:
        return bool(self.limits.per_minute or self.limits.per_day)

    def room(self) -> int:
        """Parts that fit in what is left of both windows (UNBOUNDED: no limit)."""
        return min(
            _room(self.limits.per_minute, self.minute_used),
            _room(self.limits.per_day, self.day_used),
        )

    def first_max(self) -> int:
        """The largest message a pull's first may be: any size in an untouched window (so a
        message larger than a window's limit still goes, alone), else what is left."""
        minute = _room(self.limits.per_minute, self.minute_used) if self.minute_used else UNBOUNDED
        day = _room(self.limits.per_day, self.day_used) if self.day_used else UNBOUNDED
        return min(minute, day)

    @property
    def exhausted(self) -> bool:
        """No message but an expedited one fits until a window turns: a window with a limit
        has reached it (so `first_max` is 0 too). repository.has_claimable tests the same."""
        return self.room() == 0

    def spend(self, parts: int) -> Budget:
        return Budget(self.limits, self.minute_used + parts, self.day_used + parts)


def fits(running: int, cost: int, priority: int, room: int, first_max: int) -> bool:
    """Whether a message of `cost` parts is taken when the pull's running cost, itself
    included, is `running` (the same rule as the claim's statement, repository.claim)."""
    if priority >= EXPEDITED or running <= room:
        return True
    return running == cost and cost <= first_max


def within(
    held: list[MessageRecord], budget: Budget, spent: int
) -> tuple[list[MessageRecord], int, bool]:
    """The held messages to hand over: those the phone has, and of its pinned ones not taken
    yet, those that fit in its budget after the claims' `spent` parts, in pull order
    (`fits`). Also the parts of those pinned ones, and whether any were left out."""
    if not budget.limited:
        return held, sum(pinned_parts(r) for r in held if r.claimed_at is None), False
    room, first_max = budget.room(), budget.first_max() if spent == 0 else 0
    kept, running, withheld = [], spent, False
    for record in held:
        if record.claimed_at is None:  # pinned, not taken yet
            cost = pinned_parts(record)
            blocked = withheld and record.priority < EXPEDITED  # in order, as a claim
            if blocked or not fits(running + cost, cost, record.priority, room, first_max):
                withheld = True
                continue
            running += cost
        kept.append(record)
    return kept, running - spent, withheld


def pinned_parts(record: MessageRecord) -> int:
    """A pinned message's cost, as `messages.parts` counts it: recipients not opted out."""
    recipients = sum(1 for r in record.recipients if r.error != OPTED_OUT)
    return message_parts(record.text, recipients)


def stored_budget(
    limits: Limits, usage: tuple[int | None, int | None, int | None, int | None], now: datetime
) -> Budget:
    """The budget of a phone whose `phone_usage` row holds `usage` (minute, its parts, day,
    its parts; all None when it has none): counts of an earlier window are 0 now."""
    minute, minute_parts, day, day_parts = usage
    return Budget(
        limits,
        (minute_parts or 0) if minute == minute_of(now) else 0,
        (day_parts or 0) if day == day_of(now) else 0,
    )


@dataclass(frozen=True)
class BudgetUsage:
    """How close a phone is to its limits: parts handed to it in the current UTC minute and
    day, and the limits in force (0: none); `own_*` are its own settings (None: the
    server's default)."""

    minute_used: int
    minute_limit: int
    day_used: int
    day_limit: int
    own_per_minute: int | None = None
    own_per_day: int | None = None


_USAGE = (
    "SELECT d.id, d.parts_per_minute, d.parts_per_day,"
    " u.minute, u.minute_parts, u.day, u.day_parts"
    " FROM devices d LEFT JOIN phone_usage u ON u.device_id = d.id"
)


def _usage_of(row: tuple[object, ...], defaults: Limits, now: datetime) -> BudgetUsage:
    per_minute, per_day = row[1], row[2]
    assert per_minute is None or isinstance(per_minute, int)
    assert per_day is None or isinstance(per_day, int)
    budget = stored_budget(defaults.own(per_minute, per_day), row[3:7], now)  # type: ignore[arg-type]
    return BudgetUsage(
        budget.minute_used, budget.limits.per_minute, budget.day_used, budget.limits.per_day,
        per_minute, per_day,
    )  # fmt: skip


def server_limits(settings: Settings) -> Limits:
    """The server's default limits (SMSGW_PHONE_PARTS_PER_MINUTE, _PER_DAY)."""
    return Limits(settings.phone_parts_per_minute, settings.phone_parts_per_day)


async def usage(db: Database, user_id: int, defaults: Limits) -> dict[str, BudgetUsage]:
    """Every phone of the owner (by id): how close it is to its budget now. `defaults`: the
    server's (`Limits(settings.phone_parts_per_minute, settings.phone_parts_per_day)`)."""
    now = clock.now()

    async def read(conn: UnitConnection) -> dict[str, BudgetUsage]:
        rows = await conn.execute(_USAGE + " WHERE d.user_id = ?", (user_id,))
        return {str(row[0]): _usage_of(tuple(row), defaults, now) for row in rows}

    return await db.read_unit(read)


async def phones_with_room(db: Database, device_ids: set[str], defaults: Limits) -> set[str]:
    """Those of these phones whose budget has room for a message now."""
    if not device_ids:
        return set()
    now = clock.now()
    ids = sorted(device_ids)

    async def read(conn: UnitConnection) -> set[str]:
        query = _USAGE + f" WHERE d.id IN ({', '.join('?' * len(ids))})"
        found = {
            str(row[0]): _usage_of(tuple(row), defaults, now)
            for row in await conn.execute(query, ids)
        }
        return {device_id for device_id, used in found.items() if has_room(used)}

    return await db.read_unit(read)


def has_room(used: BudgetUsage) -> bool:
    """Whether a phone at this usage may be handed a (non-expedited) message now."""
    return not _budget(used).exhausted


def _budget(used: BudgetUsage) -> Budget:
    return Budget(Limits(used.minute_limit, used.day_limit), used.minute_used, used.day_used)
