"""The dashboard's conversations: one per phone number (search, paging), a conversation's
messages both ways, and a reply from it, sent as the send page sends (`POST /messages`'s
rules and service)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from smsgw.conversations import service
from smsgw.conversations.export import MAX_SPAN
from smsgw.devices import service as devices
from smsgw.domain.errors import DomainError, status_of
from smsgw.messages import service as messages
from smsgw.messages.schemas import SendMessageRequest
from smsgw.routing import service as routing
from smsgw.web.common import (
    FORM_EXPIRED,
    Visitor,
    checked_form,
    conversation_url,
    error_page,
    field,
    redirect,
    render,
    visitor,
)
from smsgw.web.messages import FilterError, paging

router = APIRouter()
PAGE = "/dashboard/conversations"
NOTICES = {"sent": "Reply queued. It waits for one of your phones."}
#: The reply form's fields by the request body's (a problem is shown on its field).
FIELDS = {"textMessage": "text", "deviceId": "deviceId", "simNumber": "simNumber"}


async def phone_names(who: Visitor) -> tuple[list[Any], dict[str, str]]:
    """The owner's phones, and each one's name by id (its id when it has none)."""
    phones = await devices.list_devices(who.context.db, who.user_id)
    return phones, {p.id: p.name or p.id for p in phones}


def links(shown: dict[str, str], page: int, more: bool) -> dict[str, str | None]:
    def link(number: int) -> str:
        return "?" + urlencode({**shown, "page": str(number)})

    return {
        "previous": link(page - 1) if page > 1 else None,
        "next": link(page + 1) if more else None,
    }


async def list_page(request: Request, who: Visitor, status: int = 200, **values: Any) -> Response:
    """The list of conversations (with the CSV export's form; `values` add to the page)."""
    query = request.query_params
    shown = {k: query.get(k, "").strip() for k in ("q", "limit")}
    values.setdefault("export", {})
    try:
        limit, page = paging(shown["limit"], query.get("page", "1"))
    except FilterError as error:
        return render(request, "conversations.html", 400, who, error=str(error), rows=[],
                      shown={}, total=0, pages=None, names={}, max_days=MAX_SPAN.days,
                      **values)  # fmt: skip
    context = who.context
    rows, total = await service.conversations(
        context.db, context.settings.default_region, who.user_id, shown["q"],
        (page - 1) * limit, limit,
    )  # fmt: skip
    _, names = await phone_names(who)
    kept = {k: v for k, v in shown.items() if v}
    pages = {**links(kept, page, page * limit < total), "label": f"Page {page}"}
    return render(
        request, "conversations.html", status, who, rows=rows, shown=kept, total=total,
        pages=pages, names=names, window=service.WINDOW, search_window=service.SEARCH_WINDOW,
        cap=service.COUNT_CAP, max_days=MAX_SPAN.days, **values,
    )  # fmt: skip


@router.get(PAGE)
async def show_list(request: Request) -> Response:
    return await list_page(request, await visitor(request))


async def thread_page(
    request: Request, who: Visitor, number: str, status: int = 200, **values: Any
) -> Response:
    """One conversation, newest first, with the reply form (`values`: its state)."""
    context = who.context
    try:
        limit, page = paging("20", request.query_params.get("page", "1"))
        found = await service.thread(
            context.db, context.settings.default_region, who.user_id, number,
            (page - 1) * limit, limit,
        )  # fmt: skip
    except (FilterError, DomainError) as error:
        message = error.message if isinstance(error, DomainError) else str(error)
        return error_page(request, 400, message, who)
    phones, names = await phone_names(who)
    notice = NOTICES.get(request.query_params.get("notice", ""))
    values.setdefault("form", {})
    values.setdefault("problems", {})
    return render(
        request, "conversation.html", status, who, thread=found, phones=phones, names=names,
        pages=links({}, page, found.more), notice=notice, cap=service.COUNT_CAP, **values,
    )  # fmt: skip


@router.get(PAGE + "/{number:path}")
async def show_thread(request: Request, number: str) -> Response:
    who = await visitor(request)
    key = service.key_of(number, who.context.settings.default_region)
    if not key or len(key) > 128:
        return error_page(request, 404, "No such conversation.", who)
    if key != number:  # one address per conversation
        query = f"?{request.url.query}" if request.url.query else ""
        return redirect(conversation_url(key) + query)
    return await thread_page(request, who, key)


def _command(form: FormData, number: str) -> messages.SendCommand:
    """The reply as `POST /messages` would take it: the same model checks it."""
    body: dict[str, Any] = {"phoneNumbers": [number], "textMessage": {"text": field(form, "text")}}
    if field(form, "deviceId"):
        body["deviceId"] = field(form, "deviceId")
    sim = field(form, "simNumber")
    if sim:  # a number, else the model says what is wrong with it
        body["simNumber"] = int(sim) if sim.isascii() and sim.isdigit() else sim
    checked = SendMessageRequest.model_validate(body)
    assert checked.textMessage is not None
    return messages.SendCommand(
        phone_numbers=checked.phoneNumbers, text=checked.textMessage.text,
        device_id=checked.deviceId, sim_number=checked.simNumber,
    )  # fmt: skip


def _problem(error: ValidationError | DomainError) -> tuple[str, str]:
    """(the form's field or "" for the page, what is wrong) of a refused reply."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        message = first["msg"].removeprefix("Value error, ")
        if name == "textMessage" and first["type"] == "string_too_short":
            message = "write a text"
        return FIELDS.get(name, ""), message
    found = re.match(r"^(\w+)(?:\[\d+\])?: ", error.message)
    name = found.group(1) if found else ""
    return FIELDS.get(name, ""), error.message[found.end() :] if found else error.message


@router.post(PAGE + "/{number:path}")
async def reply(request: Request, number: str) -> Response:
    """Send a text to the conversation's number; back to the conversation."""
    who = await visitor(request)
    context = who.context
    number = service.key_of(number, context.settings.default_region)
    form = await checked_form(request, who)
    if form is None:
        return await thread_page(request, who, number, 403, error=FORM_EXPIRED)
    try:
        record = await messages.send(
            context.db, context.settings.default_region, who.user_id, _command(form, number)
        )
    except (ValidationError, DomainError) as error:
        name, message = _problem(error)
        status = 400 if isinstance(error, ValidationError) else status_of(error)
        problems = {name: message} if name else {}
        page_error = None if name else f"Number {number}: {message}"
        return await thread_page(request, who, number, status, form=form, problems=problems,
                                 error=page_error)  # fmt: skip
    routing.wake_for_new(context.hub, who.user_id, record.device_id, context.settings.claim_cap)
    return redirect(conversation_url(number) + "?notice=sent")
