"""Route of the event log: what the server did about your messages, phones and webhooks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from smsgw.api.deps import Context, CurrentUser
from smsgw.domain.clock import format_timestamp
from smsgw.logs import service as logs
from smsgw.logs.repository import EntryRecord
from smsgw.messages.schemas import ErrorBody, Instant, Timestamp

router = APIRouter(tags=["Logs"])


class LogEntryView(BaseModel):
    """Upstream's LogEntry."""

    id: int
    createdAt: Timestamp
    module: str
    priority: str
    message: str
    context: dict[str, Any] | None = None


def render(entry: EntryRecord) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": entry.id,
        "createdAt": format_timestamp(entry.created_at),
        "module": entry.module,
        "priority": entry.priority,
        "message": entry.message,
    }
    if entry.context:
        view["context"] = entry.context
    return view


@router.get(
    "/logs",
    summary="Get the event log",
    response_model=list[LogEntryView],
    responses={401: {"model": ErrorBody, "description": "Missing or wrong credentials."}},
)
async def get_logs(
    context: Context,
    user_id: CurrentUser,
    since: Annotated[
        Instant | None, Query(alias="from", description="Created at or after (RFC 3339).")
    ] = None,
    until: Annotated[
        Instant | None, Query(alias="to", description="Created before (RFC 3339).")
    ] = None,
) -> JSONResponse:
    """Your entries in [from, to), oldest first, at most 1000 (narrow the range for more)."""
    found = await logs.list_entries(context.db, user_id, since, until)
    return JSONResponse([render(entry) for entry in found])
