"""The dashboard's CSV export: messages or received messages of a range of UTC days, as a
download (the form is on the conversations page; the API's `GET /exports/...` make the same
files)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from smsgw.conversations import export
from smsgw.domain.errors import InvalidInput
from smsgw.web.common import visitor
from smsgw.web.conversations import list_page
from smsgw.web.messages import FilterError, parse_day

router = APIRouter()
KINDS = {"messages": export.message_csv, "inbox": export.inbox_csv}


class Refused(Exception):
    """A field of the export form (`name`) and what is wrong with it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name, self.message = name, message


def csv_download(body: AsyncIterator[str], name: str) -> StreamingResponse:
    """A CSV file, streamed as it is read, always a download."""
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return StreamingResponse(body, media_type="text/csv; charset=utf-8", headers=headers)


def _day(value: str, name: str) -> datetime:
    try:
        day = parse_day(value, name)
    except FilterError:
        raise Refused(name, "use a date such as 2026-01-31") from None
    if day is None:
        raise Refused(name, "give a date")
    return day


def span_of(first: str, last: str) -> tuple[datetime, datetime]:
    """[the first day's start, the day after the last) of the form's UTC days."""
    since, until = _day(first, "from"), _day(last, "to")
    if until < since:
        raise Refused("to", "must not be before the From day")
    try:
        return export.check_span(since, until + timedelta(days=1))
    except InvalidInput as error:
        raise Refused("to", error.message.removeprefix("to: ")) from None


@router.get("/dashboard/export")
async def download(request: Request) -> Response:
    """The CSV of `what` (messages or inbox) from the day `from` to the day `to`, both
    included; the conversations page with the problem on its field when refused."""
    who = await visitor(request)
    entered = {k: request.query_params.get(k, "").strip() for k in ("what", "from", "to")}
    try:
        make = KINDS.get(entered["what"])
        if make is None:
            raise Refused("what", "choose messages or received messages")
        span = span_of(entered["from"], entered["to"])
    except Refused as refused:
        problems = {refused.name: refused.message}
        return await list_page(request, who, 400, export=entered, problems=problems)
    name = export.filename(entered["what"], span)
    return csv_download(make(who.context.db, who.user_id, span), name)
