"""The dashboard's inbox: received SMS and MMS with filters and paging, MMS parts to
download; ask the phones to replay theirs.

The same services as the API's `GET /inbox`, `GET /inbox/{id}/attachments/{partId}` and
`POST /inbox/refresh` (an export per phone: `MessagesExportRequested` now, or when it next
connects; the phones post what they find).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from smsgw.devices import service as devices
from smsgw.domain import clock
from smsgw.domain.errors import NotFound
from smsgw.downloads import download
from smsgw.inbox import exports, service
from smsgw.inbox.repository import InboxFilter
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
from smsgw.web.messages import FilterError, paging, parse_day

router = APIRouter()
PAGE = "/dashboard/inbox"
TYPES = ("SMS", "DATA_SMS", "MMS", "MMS_DOWNLOADED")
REFRESH_DAYS = (1, 7, 30)
ASCII_NUMBER = re.compile(r"[0-9]{1,10}")
NOTICES = {
    "refreshed": "Asked your phones to send their received messages again "
    "(a phone offline now gets the request when it next connects)."
}


def filter_of(request: Request) -> tuple[InboxFilter, int, int, dict[str, str]]:
    """The filter, page size and page number from the query string, and the values to keep."""
    query = request.query_params
    shown = {k: query.get(k, "").strip() for k in ("type", "from", "to", "deviceId", "limit")}
    if shown["type"] and shown["type"] not in TYPES:
        raise FilterError(f"Type: unknown type {shown['type']!r}")
    limit, page = paging(shown["limit"], query.get("page", "1"))
    until = parse_day(shown["to"], "To")
    wanted = InboxFilter(
        type=shown["type"] or None,
        since=parse_day(shown["from"], "From"),
        until=until.replace(hour=23, minute=59, second=59) if until else None,
        device_id=shown["deviceId"][:32] or None,
    )
    return wanted, limit, page, {k: v for k, v in shown.items() if v}


def page_links(shown: dict[str, str], limit: int, page: int, total: int) -> dict[str, Any]:
    last = max(1, -(-total // limit))

    def link(number: int) -> str:
        return "?" + urlencode({**shown, "page": str(number)})

    return {
        "previous": link(page - 1) if page > 1 else None,
        "next": link(page + 1) if page < last else None,
        "label": f"Page {page} of {last}",
    }


async def inbox_page(request: Request, who: Visitor, status: int = 200, **values: Any) -> Response:
    phones = await devices.list_devices(who.context.db, who.user_id)
    try:
        wanted, limit, page, shown = filter_of(request)
    except FilterError as error:
        return render(
            request, "inbox.html", 400, who, error=str(error), rows=[], shown={}, total=0,
            pages=None, types=TYPES, phones=phones, days=REFRESH_DAYS,
        )  # fmt: skip
    rows, total = await service.list_inbox(
        who.context.db, who.user_id, wanted, limit, (page - 1) * limit, with_parts=True
    )
    notice = NOTICES.get(request.query_params.get("notice", ""))
    values.setdefault("notice", notice)
    return render(
        request, "inbox.html", status=status, who=who, rows=rows, shown=shown, total=total,
        pages=page_links(shown, limit, page, total), types=TYPES, phones=phones,
        days=REFRESH_DAYS, **values,
    )  # fmt: skip


@router.get(PAGE)
async def show_inbox(request: Request) -> Response:
    return await inbox_page(request, await visitor(request))


def part_number(text: str) -> int | None:
    """A part id as the API takes it (ASCII digits, below 2**31); None for anything else
    (`str.isdigit` also accepts "²" and other scripts' digits)."""
    if not ASCII_NUMBER.fullmatch(text) or int(text) >= 2**31:
        return None
    return int(text)


@router.get(PAGE + "/{message_id}/attachments/{part_id}")
async def attachment(request: Request, message_id: str, part_id: str) -> Response:
    """An MMS part of the signed-in user's inbox, as `GET /inbox/{id}/attachments/{partId}`."""
    who = await visitor(request)
    number = part_number(part_id)
    if number is None or len(message_id) > 32:
        return error_page(request, 404, "No such attachment.", who)
    try:
        found = await service.attachment(who.context.db, who.user_id, message_id, number)
    except NotFound:
        return error_page(request, 404, "No such attachment.", who)
    return download(*found)


@router.post(PAGE + "/refresh")
async def refresh(request: Request) -> Response:
    """As `POST /inbox/refresh`: the chosen phone (or all connected ones) replays the last days."""
    who = await visitor(request)
    form = await checked_form(request, who)
    if form is None:
        return await inbox_page(request, who, 403, error=FORM_EXPIRED)
    days_text = field(form, "days")
    days = int(days_text) if days_text in {str(n) for n in REFRESH_DAYS} else 7
    until = clock.now()
    since = until - timedelta(days=days)
    device_id = field(form, "deviceId") or None
    await exports.request(who.context.db, who.context.hub, who.user_id, (since, until), device_id)
    return redirect(f"{PAGE}?notice=refreshed")
