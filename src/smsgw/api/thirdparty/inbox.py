"""Routes of the inbox: list received messages, ask phones to replay their inbox."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictBool, model_validator

from smsgw.api.deps import Context, CurrentUser
from smsgw.domain import clock
from smsgw.inbox import service as inbox
from smsgw.inbox.repository import InboxFilter
from smsgw.messages.schemas import ErrorBody, Instant

router = APIRouter(tags=["Inbox"])
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid parameter or body."},
    401: {"model": ErrorBody, "description": "Missing or wrong credentials."},
}
InboxType = Literal["SMS", "DATA_SMS", "MMS", "MMS_DOWNLOADED"]
PREVIEW = 160


class RefreshIn(BaseModel):
    """`POST /inbox/refresh`, as upstream: `since` ≤ `until` (RFC 3339), optional phone and
    types; `triggerWebhooks` and `webhookDelivery` are accepted for compatibility (smsgw
    always has phones post, see docs/webhooks.md)."""

    deviceId: str | None = Field(default=None, max_length=32)
    since: Instant
    until: Instant
    messageTypes: list[InboxType] | None = Field(default=None, min_length=1)
    triggerWebhooks: StrictBool | None = None
    webhookDelivery: Literal["Disabled", "Individual", "Batch"] | None = None

    @model_validator(mode="after")
    def _range_is_ordered(self) -> RefreshIn:
        if self.since > self.until:
            raise ValueError("since must not be after until")
        return self


def item(row: dict[str, Any]) -> dict[str, Any]:
    content = row["text"] if row["text"] is not None else row["data"] or ""
    shown = {
        "id": row["ext_id"], "type": row["type"], "deviceId": row["device_id"],
        "messageId": row["message_id"], "sender": row["sender"],
        "recipient": row["recipient"], "simNumber": row["sim_number"],
        "contentPreview": content[:PREVIEW], "message": row["text"], "data": row["data"],
        "createdAt": clock.format_timestamp(row["received_at"]),
    }  # fmt: skip
    return {key: value for key, value in shown.items() if value is not None}


@router.get("/inbox", responses=ERRORS)
async def list_inbox(
    context: Context,
    user_id: CurrentUser,
    type: Annotated[InboxType | None, Query(description="Only this kind.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    since: Annotated[
        Instant | None, Query(alias="from", description="Received at or after.")
    ] = None,
    until: Annotated[
        Instant | None, Query(alias="to", description="Received at or before.")
    ] = None,
    deviceId: Annotated[str | None, Query(max_length=32)] = None,
) -> JSONResponse:
    """Received SMS and data SMS, newest first; `X-Total-Count` is the number of matches."""
    wanted = InboxFilter(type, since, until, deviceId)
    rows, total = await inbox.list_inbox(context.db, user_id, wanted, limit, offset)
    return JSONResponse([item(r) for r in rows], headers={"X-Total-Count": str(total)})


@router.post("/inbox/refresh", status_code=202, responses=ERRORS)
async def refresh(body: RefreshIn, context: Context, user_id: CurrentUser) -> JSONResponse:
    """Ask the phone (or all your connected phones) to replay received messages in the range.

    Replayed messages land in the inbox; those not stored before also go to your webhooks.
    """
    inbox.request_export(
        context.hub, user_id, body.since, body.until, body.deviceId, body.messageTypes
    )
    return JSONResponse({}, status_code=202)


@router.post("/messages/inbox/export", status_code=202, responses=ERRORS, deprecated=True)
async def export(body: RefreshIn, context: Context, user_id: CurrentUser) -> JSONResponse:
    """Upstream's older name for `POST /inbox/refresh` (scope `messages:export`); the same
    request and effect, answered with `Deprecation: true`."""
    inbox.request_export(
        context.hub, user_id, body.since, body.until, body.deviceId, body.messageTypes
    )
    return JSONResponse({}, status_code=202, headers={"Deprecation": "true"})
