"""The dashboard's messages: the table with filters and paging, one message, cancel."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from smsgw.devices import service as devices
from smsgw.domain.errors import DomainError, status_of
from smsgw.domain.states import ProcessingState
from smsgw.events.hub import Event, PhoneEvent
from smsgw.messages import service
from smsgw.messages.repository import ListFilter
from smsgw.web.common import (
    FORM_EXPIRED,
    Visitor,
    checked_form,
    error_page,
    redirect,
    render,
    visitor,
)

router = APIRouter()
PAGE_SIZES = (20, 50, 100)
#: The last page number asked for: past the data a page is empty anyway, and a larger one
#: would make an offset beyond the database's integers.
MAX_PAGE = 1_000_000_000
NOTICES = {
    "queued": "Message queued. It waits for one of your phones.",
    "cancelled": "Cancel requested.",
}


def paging(limit_text: str, page_text: str) -> tuple[int, int]:
    """Rows per page (one of PAGE_SIZES, else 20) and the page number (from 1) of a list."""
    limit = int(limit_text) if limit_text in {str(n) for n in PAGE_SIZES} else 20
    try:
        page = int(page_text)
    except ValueError:
        page = MAX_PAGE + 1
    if page > MAX_PAGE:
        raise FilterError(f"Page: must be a whole number up to {MAX_PAGE}")
    return limit, max(1, page)


def parse_day(value: str, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise FilterError(f"{name}: use a date such as 2026-01-31") from None


class FilterError(Exception):
    pass


def filter_of(request: Request) -> tuple[ListFilter, dict[str, str]]:
    """The list filter from the query string, and the filter values to show and keep."""
    query = request.query_params
    shown = {k: query.get(k, "").strip() for k in ("state", "deviceId", "from", "to", "limit")}
    state = shown["state"]
    if state and state not in {s.value for s in ProcessingState}:
        raise FilterError(f"State: unknown state {state!r}")
    limit, page = paging(shown["limit"], query.get("page", "1"))
    until = parse_day(shown["to"], "To")
    where = ListFilter(
        since=parse_day(shown["from"], "From"),
        until=until.replace(hour=23, minute=59, second=59) if until else None,
        state=state or None,
        device_id=shown["deviceId"] or None,
        offset=(page - 1) * limit,
        limit=limit,
    )
    return where, {k: v for k, v in shown.items() if v}


def page_links(shown: dict[str, str], where: ListFilter, total: int) -> dict[str, str | None]:
    page = where.offset // where.limit + 1
    last = max(1, -(-total // where.limit))

    def link(number: int) -> str:
        return "?" + urlencode({**shown, "page": str(number)})

    return {
        "previous": link(page - 1) if page > 1 else None,
        "next": link(page + 1) if page < last else None,
        "label": f"Page {page} of {last}",
    }


@router.get("/dashboard/messages")
async def list_messages(request: Request) -> Response:
    who = await visitor(request)
    try:
        where, shown = filter_of(request)
    except FilterError as error:
        return render(request, "messages.html", 400, who, error=str(error), records=[],
                      shown={}, total=0, pages=None, states=list(ProcessingState), names={},
                      phones=[])  # fmt: skip
    records, total, _ = await service.list_page(who.context.db, who.user_id, where)
    phones = await devices.list_devices(who.context.db, who.user_id)
    template = "_table.html" if request.query_params.get("fragment") else "messages.html"
    return render(
        request, template, who=who, records=records, shown=shown, total=total,
        pages=page_links(shown, where, total), states=list(ProcessingState),
        names={p.id: p.name or p.id for p in phones}, phones=phones,
    )  # fmt: skip


@router.get("/dashboard/messages/{message_id:path}")
async def show_message(request: Request, message_id: str) -> Response:
    who = await visitor(request)
    try:
        record = await service.get(who.context.db, who.user_id, message_id)
    except DomainError as error:
        return error_page(request, status_of(error), "No such message of yours.", who)
    template = "_detail.html" if request.query_params.get("fragment") else "message.html"
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return render(request, template, who=who, record=record, notice=notice)


@router.post("/dashboard/messages/{message_id:path}/cancel")
async def cancel_message(request: Request, message_id: str) -> Response:
    who = await visitor(request)
    if await checked_form(request, who) is None:
        return error_page(request, 403, FORM_EXPIRED, who)
    return await _cancel(request, who, message_id)


async def _cancel(request: Request, who: Visitor, message_id: str) -> Response:
    try:
        record = await service.cancel(who.context.db, who.user_id, message_id)
    except DomainError as error:
        return error_page(request, status_of(error), f"Cannot cancel: {error.message}.", who)
    if record.state == ProcessingState.CANCELLING and record.device_id is not None:
        cancelled = Event(PhoneEvent.MESSAGE_CANCELLED, {"messageId": record.id})
        who.context.hub.publish({record.device_id}, cancelled)
    return redirect(f"/dashboard/messages/{quote(record.id)}?notice=cancelled")
