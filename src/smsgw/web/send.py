"""The dashboard's send form: the same rules and the same service call as `POST /messages`."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from smsgw.devices import service as devices
from smsgw.domain.errors import DomainError, InvalidInput, status_of
from smsgw.messages import service
from smsgw.messages.parts import count_parts, encoding_of
from smsgw.messages.schemas import MAX_TEXT, SendMessageRequest
from smsgw.routing import service as routing
from smsgw.web.common import FORM_EXPIRED, Visitor, checked_form, field, redirect, render, visitor

router = APIRouter()
SEPARATORS = re.compile(r"[,;\n]+")
PRIORITIES = [(0, "Normal"), (100, "Urgent (skips the phone's limits)"), (-128, "Low")]


def parts_label(text: str) -> str:
    """What the form says under the text: its length, its parts and their encoding."""
    parts = count_parts(text)
    return (
        f"{len(text)} characters: {parts} SMS part{'s' if parts > 1 else ''} ({encoding_of(text)})"
    )


def _instant(value: str) -> str | None:
    """A `datetime-local` value (read as UTC) or RFC 3339 text; None when empty."""
    if not value:
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", value):
        return value + ":00Z"
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", value):
        return value + "Z"
    return value


def _integer(value: str, name: str) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"{name}: must be a whole number") from None


def body_of(form: FormData) -> dict[str, Any]:
    """The API request body the form stands for (validated by SendMessageRequest)."""
    body: dict[str, Any] = {
        "phoneNumbers": [n.strip() for n in SEPARATORS.split(field(form, "phoneNumbers"))],
        "textMessage": {"text": field(form, "text")},
        "withDeliveryReport": form.get("withDeliveryReport") == "on",
        "priority": _integer(field(form, "priority"), "Priority") or 0,
    }
    body["phoneNumbers"] = [n for n in body["phoneNumbers"] if n]
    optional = {
        "simNumber": _integer(field(form, "simNumber"), "SIM"),
        "deviceId": field(form, "deviceId") or None,
        "scheduleAt": _instant(field(form, "scheduleAt")),
        "validUntil": _instant(field(form, "validUntil")),
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


LABELS = {
    "phoneNumbers": "Recipients",
    "textMessage": "Text",
    "simNumber": "SIM",
    "priority": "Priority",
    "scheduleAt": "Send at",
    "validUntil": "Valid until",
    "deviceId": "Phone",
}


def explain(error: ValidationError) -> str:
    """The first problem, named by the form's label."""
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    label = LABELS.get(loc[0], "") if loc else ""
    message = first["msg"].removeprefix("Value error, ")
    if loc and loc[0] == "phoneNumbers" and first["type"] == "too_short":
        message = "enter at least one phone number"
    return f"{label}: {message}" if label else message


def labelled(message: str) -> str:
    """A service message named by the form's label: `phoneNumbers[0]: ...` reads
    `Recipients (number 1): ...`."""
    found = re.match(r"^(\w+)(?:\[(\d+)\])?: ", message)
    if found is None or found.group(1) not in LABELS:
        return message
    which = f" (number {int(found.group(2)) + 1})" if found.group(2) else ""
    return f"{LABELS[found.group(1)]}{which}: {message[found.end() :]}"


async def send_page(
    request: Request, who: Visitor, status: int = 200, error: str | None = None
) -> Response:
    phones = await devices.list_devices(who.context.db, who.user_id)
    form = await request.form() if request.method == "POST" else None
    text = field(form, "text") if form is not None else ""
    return render(
        request, "send.html", status=status, who=who, phones=phones, error=error,
        form=form or {}, priorities=PRIORITIES, parts=parts_label(text) if text else None,
    )  # fmt: skip


@router.get("/dashboard/send")
async def show_send(request: Request) -> Response:
    return await send_page(request, await visitor(request))


@router.post("/dashboard/send")
async def do_send(request: Request) -> Response:
    who = await visitor(request)
    form = await checked_form(request, who)
    if form is None:
        return await send_page(request, who, 403, FORM_EXPIRED)
    try:
        body = SendMessageRequest.model_validate(body_of(form))
        command = service.SendCommand(
            phone_numbers=body.phoneNumbers,
            text=body.textMessage.text if body.textMessage else None,
            device_id=body.deviceId,
            sim_number=body.simNumber,
            with_delivery_report=body.withDeliveryReport,
            priority=body.priority,
            valid_until=body.validUntil,
            schedule_at=body.scheduleAt,
        )
        record = await service.send(
            who.context.db, who.context.settings.default_region, who.user_id, command
        )
    except ValidationError as error:
        return await send_page(request, who, 400, explain(error))
    except DomainError as error:
        return await send_page(request, who, status_of(error), labelled(error.message))
    routing.wake_for_new(
        who.context.hub, who.user_id, record.device_id, who.context.settings.claim_cap
    )
    return redirect(f"/dashboard/messages/{quote(record.id)}?notice=queued")


@router.post("/dashboard/send/parts")
async def parts_of(request: Request) -> Response:
    """The send form's count as the text is typed (static/parts.js): the same rules as
    `partsCount`, so the page never counts differently from the API."""
    who = await visitor(request)
    form = await checked_form(request, who)
    if form is None:
        return JSONResponse({"message": FORM_EXPIRED}, status_code=403)
    text = form.get("text")
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        return JSONResponse(
            {"message": f"text: a text of at most {MAX_TEXT} characters is needed"},
            status_code=400,
        )
    text = text.strip()  # as the form's send reads it
    return JSONResponse({"label": parts_label(text), "parts": count_parts(text)})
