"""The dashboard's opt-out list: the numbers your messages are not sent to; add, remove.

The same service as the API's `/opt-outs` routes: a number is read as a recipient of
`POST /messages` is, and a message to a listed number is accepted with that recipient Failed
("recipient opted out"). Recipients who text a stop word (STOP, ...) are listed by themselves.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from smsgw.domain.errors import DomainError, status_of
from smsgw.domain.keywords import START_WORDS
from smsgw.optouts import service
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
from smsgw.web.inbox import page_links
from smsgw.web.messages import FilterError, paging

router = APIRouter()
PAGE = "/dashboard/opt-outs"
NOTICES = {
    "added": "Number added: messages to it now fail with “recipient opted out”.",
    "listed": "That number was on the list already.",
    "removed": "Number removed: messages to it are sent again.",
}


async def opt_outs_page(
    request: Request, who: Visitor, status: int = 200, **values: Any
) -> Response:
    query = request.query_params
    try:
        limit, page = paging("50", query.get("page", "1"))
    except FilterError as error:
        return error_page(request, 400, str(error), who)
    records, total = await service.list_page(who.context.db, who.user_id, limit, (page - 1) * limit)
    values.setdefault("notice", NOTICES.get(query.get("notice", "")))
    values.setdefault("entered", "")
    settings = who.context.settings
    return render(
        request, "optouts.html", status=status, who=who, records=records, total=total,
        pages=page_links({}, limit, page, total), words=service.keywords(settings.opt_out_words),
        start_words=START_WORDS, **values,
    )  # fmt: skip


@router.get(PAGE)
async def show_opt_outs(request: Request) -> Response:
    return await opt_outs_page(request, await visitor(request))


@router.post(PAGE)
async def add_opt_out(request: Request) -> Response:
    who = await visitor(request)
    form = await checked_form(request, who)
    if form is None:
        return await opt_outs_page(request, who, 403, error=FORM_EXPIRED)
    entered = field(form, "phoneNumber")[:128]
    if not entered:
        return await opt_outs_page(request, who, 400, field_error="enter a phone number")
    region = who.context.settings.default_region
    try:
        _, added = await service.add(
            who.context.db, region, who.user_id, entered, service.DASHBOARD
        )
    except DomainError as error:
        message = error.message.removeprefix("phoneNumber: ")
        return await opt_outs_page(request, who, 400, field_error=message, entered=entered)
    return redirect(f"{PAGE}?notice={'added' if added else 'listed'}")


@router.post(PAGE + "/remove")
async def remove_opt_out(request: Request) -> Response:
    who = await visitor(request)
    form = await checked_form(request, who)
    if form is None:
        return await opt_outs_page(request, who, 403, error=FORM_EXPIRED)
    region = who.context.settings.default_region
    try:
        await service.remove(who.context.db, region, who.user_id, field(form, "phoneNumber"))
    except DomainError as error:
        return await opt_outs_page(request, who, status_of(error), error=error.message)
    return redirect(f"{PAGE}?notice=removed")
