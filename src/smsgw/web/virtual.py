"""The dashboard's virtual phones: add one, make one receive an SMS (virtualphones/)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from smsgw.domain.errors import DomainError, InvalidInput, status_of
from smsgw.events import signals
from smsgw.events.user_feed import notify
from smsgw.virtualphones import service as virtual
from smsgw.web.common import FORM_EXPIRED, checked_form, field, redirect, visitor
from smsgw.web.phones import phones_page

router = APIRouter()


def _delay(text: str) -> float:
    try:
        return float(text) if text else virtual.DEFAULT_DELAY
    except ValueError:
        raise InvalidInput("delay: seconds from 0 to 86400") from None


@router.post("/dashboard/phones/virtual")
async def add_virtual(request: Request) -> Response:
    who = await visitor(request)
    form = await checked_form(request, who)
    if form is None:
        return await phones_page(request, who, 403, error=FORM_EXPIRED)
    context = who.context
    try:
        delay = _delay(field(form, "delay"))
        await virtual.add(
            context.db, context.settings, who.user_id, who.login, field(form, "name"), delay,
            field(form, "outcome") or "delivered",
        )  # fmt: skip
    except DomainError as error:
        return await phones_page(request, who, status_of(error), error=error.message)
    notify(context.db, who.user_id)
    return redirect("/dashboard/phones?notice=virtual")


@router.post("/dashboard/phones/virtual/receive")
async def receive(request: Request) -> Response:
    who = await visitor(request)
    form = await checked_form(request, who)
    if form is None:
        return await phones_page(request, who, 403, error=FORM_EXPIRED)
    context = who.context
    text = form.get("text")
    try:
        await virtual.inject(
            context.db, context.settings, who.user_id, field(form, "deviceId"), field(form, "from"),
            text if isinstance(text, str) else "",
        )  # fmt: skip
    except DomainError as error:
        return await phones_page(request, who, status_of(error), error=error.message)
    context.signals.emit(signals.OUTBOX_FILLED)  # the webhooks go out now
    return redirect("/dashboard/phones?notice=received")
