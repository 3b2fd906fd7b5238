"""The dashboard's webhooks: list, create, delete, each one's delivery log, the signing key.

The same service the API's `/webhooks` routes use, with the same URL rules (https only and no
private address unless the operator allows it); every change tells the phones
(`WebhooksUpdated`), as the API does.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from smsgw.devices import service as devices
from smsgw.domain.errors import DomainError, status_of
from smsgw.web.common import (
    FORM_EXPIRED,
    Visitor,
    checked_form,
    error_page,
    field,
    redirect,
    render,
    visitor,
)
from smsgw.webhooks import service
from smsgw.webhooks.events import EVENTS
from smsgw.webhooks.schemas import WebhookIn

router = APIRouter()
PAGE = "/dashboard/webhooks"
NOTICES = {"created": "Webhook saved.", "deleted": "Webhook deleted."}
#: Which form field an error of the service or of the body concerns.
FIELDS = {"url": "url", "event": "event", "deviceId": "deviceId", "device_id": "deviceId"}


async def webhooks_page(
    request: Request, who: Visitor, status: int = 200, **values: Any
) -> Response:
    db = who.context.db
    phones = await devices.list_devices(db, who.user_id)
    values.setdefault("errors", {})
    values.setdefault("entered", {})
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return render(
        request, "webhooks.html", status=status, who=who, notice=notice, events=EVENTS,
        webhooks=await service.list_webhooks(db, who.user_id), phones=phones,
        allow_private=who.context.settings.webhooks_allow_private_urls, **values,
    )  # fmt: skip


@router.get(PAGE)
async def show_webhooks(request: Request) -> Response:
    return await webhooks_page(request, await visitor(request))


def field_errors(error: ValidationError) -> dict[str, str]:
    found: dict[str, str] = {}
    for problem in error.errors():
        name = FIELDS.get(str(problem["loc"][0]) if problem["loc"] else "", "url")
        found.setdefault(name, str(problem["msg"]).removeprefix("Value error, "))
    return found


def service_error(message: str) -> dict[str, str]:
    """`url: must start with https://` → {"url": "must start with https://"}."""
    if '"device_id"' in message:
        return {"deviceId": "not one of your phones"}
    name, _, rest = message.partition(":")
    if name in FIELDS and rest:
        return {FIELDS[name]: rest.strip()}
    return {"url": message}


@router.post(PAGE)
async def create_webhook(request: Request) -> Response:
    who = await visitor(request)
    form = await checked_form(request, who)
    if form is None:
        return await webhooks_page(request, who, 403, error=FORM_EXPIRED)
    entered = {name: field(form, name) for name in ("url", "event", "deviceId")}
    try:
        body = WebhookIn(url=entered["url"], event=entered["event"],
                         deviceId=entered["deviceId"] or None)  # fmt: skip
    except ValidationError as error:
        return await webhooks_page(request, who, 400, errors=field_errors(error), entered=entered)
    allow = who.context.settings.webhooks_allow_private_urls
    try:
        changed = await service.register(who.context.db, who.user_id, body, allow)
    except DomainError as error:
        errors = service_error(error.message)
        return await webhooks_page(request, who, 400, errors=errors, entered=entered)
    service.tell_phones(who.context.hub, who.user_id, changed.device_id)
    return redirect(f"{PAGE}?notice=created")


@router.post(PAGE + "/key")
async def show_key(request: Request) -> Response:
    """The signing key, shown only in the answer to this form (rotate=1 replaces it first)."""
    who = await visitor(request)
    form = await checked_form(request, who)
    if form is None:
        return await webhooks_page(request, who, 403, error=FORM_EXPIRED)
    rotate = field(form, "rotate") == "1"
    try:
        key = await service.signing_key(who.context.db, who.user_id, rotate=rotate)
    except DomainError as error:
        return await webhooks_page(request, who, status_of(error), error=error.message)
    return await webhooks_page(request, who, signing_key=key, rotated=rotate)


@router.get(PAGE + "/{ext_id}")
async def show_deliveries(request: Request, ext_id: str) -> Response:
    who = await visitor(request)
    db = who.context.db
    try:
        attempts = await service.attempts(db, who.user_id, ext_id)
    except DomainError as error:
        return error_page(request, status_of(error), "No such webhook of yours.", who)
    hooks = [w for w in await service.list_webhooks(db, who.user_id) if w.ext_id == ext_id]
    if not hooks:
        return error_page(request, 404, "No such webhook of yours.", who)
    return render(request, "webhook.html", who=who, hook=hooks[0], attempts=attempts)


@router.post(PAGE + "/{ext_id}/delete")
async def delete_webhook(request: Request, ext_id: str) -> Response:
    who = await visitor(request)
    if await checked_form(request, who) is None:
        return error_page(request, 403, FORM_EXPIRED, who)
    if not await service.delete(who.context.db, who.user_id, ext_id):
        return error_page(request, 404, "No such webhook of yours.", who)
    service.tell_phones(who.context.hub, who.user_id, None)
    return redirect(f"{PAGE}?notice=deleted")
