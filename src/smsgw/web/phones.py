"""The dashboard's phones: online status, SIM cards, budget, a one-time code to add one,
delete (virtual phones: web/virtual.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from smsgw.accounts import codes
from smsgw.devices import service as devices
from smsgw.devices.appversion import polls_only
from smsgw.domain import clock
from smsgw.domain.errors import DomainError, status_of
from smsgw.events.user_feed import notify
from smsgw.forwarded import refused_by_phones
from smsgw.links import service as links
from smsgw.links.repository import LinkRecord
from smsgw.routing import budgets
from smsgw.routing.budgets import BudgetUsage
from smsgw.virtualphones import service as virtual
from smsgw.virtualphones.repository import VirtualRecord
from smsgw.web.common import (
    FORM_EXPIRED,
    Visitor,
    base_url,
    checked_form,
    error_page,
    field,
    redirect,
    render,
    visitor,
)

router = APIRouter()
NOTICES = {
    "deleted": "Phone deleted.",
    "virtual": "Virtual phone added: it takes your messages from now on.",
    "received": "The virtual phone received the SMS: see the inbox.",
    "budget": "Budget saved: the phone's next pull applies it.",
}
#: The budget form's fields: (name, what it is called in errors, largest value).
BUDGET_FIELDS = (("perMinute", "Per minute", 1_000_000), ("perDay", "Per day", 100_000_000))


@dataclass(frozen=True)
class PhoneRow:
    id: str
    name: str
    online: bool
    last_seen: datetime
    sim_cards: list[dict[str, Any]]
    app_version: str | None = None
    polls_only: bool = False  # an app that never opens the event stream (docs/phones.md)
    #: A virtual phone's behaviour, e.g. "after 2 s: delivered" (None: a real phone).
    virtual: str | None = None
    #: How close it is to its budget (routing/budgets.py).
    budget: BudgetUsage | None = None
    #: A carrier link's description, e.g. "SMPP smsc.example:2775, bound" (None: a phone).
    link: str | None = None


def describe_link(link: LinkRecord) -> str:
    """E.g. "SMPP smsc.example:2775, bound" or "..., down: bind refused"."""
    state = f"{link.state}: {link.detail}" if link.detail else link.state
    return f"{link.kind.upper()} {link.host}:{link.port}, {state}"


async def phone_rows(who: Visitor) -> list[PhoneRow]:
    context = who.context
    window = timedelta(seconds=context.settings.online_window_seconds)
    rows = []
    behaviour = await virtual.of_user(context.db, who.user_id)
    usage = await budgets.usage(context.db, who.user_id, budgets.server_limits(context.settings))
    carriers = {link.device_id: link for link in await links.of_user(context.db, who.user_id)}
    if carriers:  # a link has no limits of the server's (only its own, and its throughput)
        usage |= {
            device_id: used
            for device_id, used in (
                await budgets.usage(context.db, who.user_id, budgets.NO_LIMITS)
            ).items()
            if device_id in carriers
        }
    for device in await devices.list_devices(context.db, who.user_id):
        seen = context.presence.last_seen(device.id, device.last_seen)
        online = context.hub.is_connected(device.id) or seen >= clock.now() - window
        row = PhoneRow(device.id, device.name or "", online, seen, device.sim_cards or [])
        polls = polls_only(device.app_version, device.push_token)
        row = replace(row, app_version=device.app_version, polls_only=polls)
        rows.append(replace(row, budget=usage.get(device.id)))
        if device.virtual:
            rows[-1] = replace(rows[-1], virtual=_behaviour(behaviour.get(device.id)))
        if (link := carriers.get(device.id)) is not None:
            rows[-1] = replace(rows[-1], online=link.state == "bound", link=describe_link(link))
    return rows


def _behaviour(phone: VirtualRecord | None) -> str:
    if phone is None:
        return ""
    return f"after {phone.delay_seconds:g} s: {phone.script.replace(',', ', ')}"


async def phones_page(request: Request, who: Visitor, status: int = 200, **values: Any) -> Response:
    mobile_url = base_url(request) + "/api/mobile/v1"
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return render(
        request, "phones.html", status=status, who=who, phones=await phone_rows(who),
        mobile_url=mobile_url, plain_http=refused_by_phones(mobile_url), notice=notice,
        virtual_on=who.context.settings.virtual_phones_enabled,
        defaults=budgets.server_limits(who.context.settings), **values,
    )  # fmt: skip


@router.get("/dashboard/phones")
async def show_phones(request: Request) -> Response:
    return await phones_page(request, await visitor(request))


@router.post("/dashboard/phones/code")
async def new_code(request: Request) -> Response:
    who = await visitor(request)
    if await checked_form(request, who) is None:
        return await phones_page(request, who, 403, error=FORM_EXPIRED)
    issued = await codes.issue(who.context.db, who.user_id, who.context.settings.code_ttl_seconds)
    return await phones_page(request, who, code=issued)


@router.post("/dashboard/phones/{device_id}/delete")
async def delete_phone(request: Request, device_id: str) -> Response:
    who = await visitor(request)
    if await checked_form(request, who) is None:
        return error_page(request, 403, FORM_EXPIRED, who)
    try:
        await devices.delete(who.context.db, who.user_id, device_id)
    except DomainError as error:
        return error_page(request, status_of(error), "No such phone of yours.", who)
    who.context.forget_sender(device_id)
    notify(who.context.db, who.user_id)
    return redirect("/dashboard/phones?notice=deleted")


@router.post("/dashboard/phones/{device_id}/budget")
async def set_budget(request: Request, device_id: str) -> Response:
    """The phone's own budget: a number of parts per minute and per day (0: no limit), or
    empty for the server's default."""
    who = await visitor(request)
    form = await checked_form(request, who)
    if form is None:
        return await phones_page(request, who, 403, error=FORM_EXPIRED)
    limits: dict[str, int | None] = {}
    for name, label, largest in BUDGET_FIELDS:
        entered = field(form, name).replace(",", "").replace("_", "")
        if entered and not (entered.isascii() and entered.isdigit() and int(entered) <= largest):
            message = f"{label}: a whole number from 0 to {largest:,} (0: no limit), or empty"
            return await phones_page(request, who, 400, error=message + " for the default.")
        limits[name] = int(entered) if entered else None
    try:
        await devices.set_budget(
            who.context.db, who.user_id, device_id,
            {"per_minute": limits["perMinute"], "per_day": limits["perDay"]},
        )  # fmt: skip
    except DomainError as error:
        return error_page(request, status_of(error), "No such phone of yours.", who)
    notify(who.context.db, who.user_id)
    return redirect("/dashboard/phones?notice=budget")
