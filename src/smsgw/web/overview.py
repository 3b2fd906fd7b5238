"""The dashboard's first page: outcomes per hour and day as charts (and tables), delivery
rate, the queue, each phone's volume, last seen and health, the recent failures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from smsgw.overview import service
from smsgw.overview.service import Bucket, Overview
from smsgw.phonehealth import service as phonehealth
from smsgw.phonehealth.repository import HealthRecord
from smsgw.routing.budgets import BudgetUsage
from smsgw.web import charts
from smsgw.web.common import Visitor, render, visitor
from smsgw.web.phones import phone_rows

router = APIRouter()


@dataclass(frozen=True)
class SenderRow:
    """One row of the senders' table: a phone, or a carrier link (`kind` "link", health
    None)."""

    kind: str
    id: str
    name: str
    online: bool
    last_seen: datetime
    last_hour: int
    last_day: int
    virtual: bool = False
    health: HealthRecord | None = None
    #: How close it is to its parts per minute and per day (routing/budgets.py).
    budget: BudgetUsage | None = None
    #: A carrier link's description (web/phones.py `describe_link`); None for a phone.
    link: str | None = None

    @property
    def battery(self) -> str:
        return phonehealth.battery_text(self.health) if self.health else ""

    @property
    def connection(self) -> str:
        return phonehealth.connection_text(self.health) if self.health else ""


async def sender_rows(who: Visitor) -> list[SenderRow]:
    """The account's phones and carrier links with their volume, latest health, budget."""
    db, user_id = who.context.db, who.user_id
    phones = await phone_rows(who)
    volumes = await service.volumes(db, user_id, [p.id for p in phones])
    health = await phonehealth.of_user(db, user_id)
    return [
        SenderRow("link" if p.link else "phone", p.id, p.name, p.online, p.last_seen,
                  volumes[p.id].last_hour, volumes[p.id].last_day, p.virtual is not None,
                  health.get(p.id), p.budget, p.link)
        for p in phones
    ]  # fmt: skip


def ago(moment: datetime, now: datetime) -> str:
    """E.g. "3 h 12 min ago", "40 s ago"."""
    seconds = max(0, int((now - moment).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h ago"
    if hours:
        return f"{hours} h {minutes} min ago"
    return f"{minutes} min ago" if minutes else f"{seconds} s ago"


def percent(rate: float | None) -> str:
    return "no outcome yet" if rate is None else f"{rate * 100:.1f} %"


def _values(buckets: list[Bucket]) -> list[dict[str, int]]:
    return [{"sent": b.sent, "delivered": b.delivered, "failed": b.failed} for b in buckets]


def _title(name: str, b: Bucket) -> str:
    return f"{name}: {b.delivered} delivered, {b.sent} sent, {b.failed} failed"


def hour_chart(hours: list[Bucket]) -> charts.Chart:
    names = [f"{b.start:%Y-%m-%d %H}:00 to {b.start + timedelta(hours=1):%H}:00 UTC" for b in hours]
    labels = [f"{b.start:%H}:00" if b.start.hour % 6 == 0 else "" for b in hours]
    titles = [_title(n, b) for n, b in zip(names, hours, strict=True)]
    return charts.stacked(_values(hours), titles, labels)


def day_chart(days: list[Bucket]) -> charts.Chart:
    last = len(days) - 1
    labels = [f"{b.start:%m-%d}" if (last - i) % 7 == 0 else "" for i, b in enumerate(days)]
    titles = [_title(f"{b.start:%Y-%m-%d} UTC", b) for b in days]
    return charts.stacked(_values(days), titles, labels)


def _facts(view: Overview) -> dict[str, str]:
    hours, days, queue = view.hours, view.days, view.queue
    delivered, failed = sum(b.delivered for b in hours), sum(b.failed for b in hours)
    oldest = "none" if queue.oldest is None else ago(queue.oldest, view.now)
    return {
        "rate_24h": percent(view.rate_24h),
        "rate_24h_detail": f"{delivered} delivered, {failed} failed; "
        f"{sum(b.sent for b in hours)} sent without a delivery report",
        "rate_30d": percent(view.rate_30d),
        "rate_30d_detail": f"{sum(b.delivered for b in days)} delivered, "
        f"{sum(b.failed for b in days)} failed",
        "oldest": oldest,
    }


@router.get("/dashboard")
async def show_overview(request: Request) -> Response:
    who = await visitor(request)
    view = await service.overview(who.context.db, who.user_id)
    senders = await sender_rows(who)
    return render(
        request, "overview.html", who=who, view=view, facts=_facts(view), senders=senders,
        hour_chart=hour_chart(view.hours), day_chart=day_chart(view.days), ago=ago,
        hour_label=lambda b: f"{b.start:%Y-%m-%d %H}:00", day_label=lambda b: f"{b.start:%Y-%m-%d}",
        any_virtual=any(s.virtual for s in senders), failures_limit=service.FAILURES,
        phone_names={s.id: s.name or s.id for s in senders},
    )  # fmt: skip
