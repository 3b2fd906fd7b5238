"""Routes of the CSV exports: your messages or your received messages over a time range
(conversations/export.py, which the dashboard's export uses too).

Not `GET /messages/export`: that path is the message whose id is `export`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from smsgw.api.apps.messages import single_valued_query
from smsgw.api.deps import Context, CurrentUser
from smsgw.conversations import export
from smsgw.messages.schemas import ErrorBody, Instant

router = APIRouter(dependencies=[Depends(single_valued_query)])
CSV_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "The CSV."},
    400: {
        "model": ErrorBody,
        "description": "A missing or invalid range, or longer than 366 days.",
    },
    401: {"model": ErrorBody, "description": "Missing or wrong credentials."},
}
Since = Annotated[
    Instant, Query(alias="from", description="From this moment, included (RFC 3339).")
]
Until = Annotated[
    Instant,
    Query(alias="to", description="Up to this moment, excluded (RFC 3339); at most 366 days on."),
]


def _csv(body: AsyncIterator[str], name: str) -> StreamingResponse:
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return StreamingResponse(body, media_type="text/csv; charset=utf-8", headers=headers)


@router.get(
    "/exports/messages",
    tags=["Messages"],
    summary="Export messages as CSV",
    responses=CSV_RESPONSES,
    response_class=StreamingResponse,
)
async def messages_csv(
    context: Context, user_id: CurrentUser, since: Since, until: Until
) -> StreamingResponse:
    """Your messages created in [`from`, `to`), oldest first, one line per recipient:
    `id, createdAt, phoneNumber, state, error, messageState, deviceId, simNumber, isEncrypted,
    text, data, port` (`state` and `error` are the recipient's). UTF-8, streamed; a cell
    starting with `=`, `+`, `-`, `@`, a tab or a carriage return is written with a leading
    `'`, so that a spreadsheet does not run it as a formula (`'+12025550100`)."""
    span = export.check_span(since, until)
    return _csv(export.message_csv(context.db, user_id, span), export.filename("messages", span))


@router.get(
    "/exports/inbox",
    tags=["Inbox"],
    summary="Export received messages as CSV",
    responses=CSV_RESPONSES,
    response_class=StreamingResponse,
)
async def inbox_csv(
    context: Context, user_id: CurrentUser, since: Since, until: Until
) -> StreamingResponse:
    """The messages your phones received in [`from`, `to`), oldest first: `id, receivedAt,
    type, sender, recipient, deviceId, simNumber, text, data, subject` (`data` is a data
    SMS's base64; an MMS's `text` is its body). UTF-8, streamed, formula-safe as the
    messages' export."""
    span = export.check_span(since, until)
    return _csv(export.inbox_csv(context.db, user_id, span), export.filename("inbox", span))
