"""Routes of the inbox: list received messages, ask phones to replay their inbox."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, StrictBool, model_validator

from smsgw.api.deps import Context, CurrentUser
from smsgw.domain import clock
from smsgw.downloads import download
from smsgw.inbox import exports
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

    deviceId: str | None = Field(
        default=None, max_length=32, description="Only this phone (all phones if unset)."
    )
    since: Instant = Field(description="Replay messages received at or after (RFC 3339).")
    until: Instant = Field(description="Replay messages received at or before (RFC 3339).")
    messageTypes: list[InboxType] | None = Field(
        default=None, min_length=1, description="Only these kinds (all if unset)."
    )
    triggerWebhooks: StrictBool | None = Field(
        default=None, description="Accepted for compatibility; phones always post to smsgw."
    )
    webhookDelivery: Literal["Disabled", "Individual", "Batch"] | None = Field(
        default=None, description="How the phones post what they replay: one by one or in batches."
    )

    @model_validator(mode="after")
    def _range_is_ordered(self) -> RefreshIn:
        if self.since > self.until:
            raise ValueError("since must not be after until")
        return self


def _parts(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"partId": part["part_id"], "name": part["name"] or "", "size": part["size"] or 0,
         "contentType": part["content_type"]}
        for part in row["parts"]
    ]  # fmt: skip


def item(row: dict[str, Any]) -> dict[str, Any]:
    """An inbox row as upstream's `IncomingMessage`, with smsgw's extra fields."""
    mms = row["type"] in ("MMS", "MMS_DOWNLOADED")
    if mms:
        content = row["text"] or row["subject"] or ""
    else:
        content = row["text"] if row["text"] is not None else row["data"] or ""
    shown = {
        "id": row["ext_id"], "type": row["type"], "deviceId": row["device_id"],
        "messageId": row["message_id"], "sender": row["sender"] or "",
        "recipient": row["recipient"], "simNumber": row["sim_number"],
        "contentPreview": content[:PREVIEW], "message": None if mms else row["text"],
        "data": row["data"], "subject": row["subject"], "body": row["text"] if mms else None,
        "transactionId": row["transaction_id"], "contentClass": row["content_class"],
        "size": row["size"], "createdAt": clock.format_timestamp(row["received_at"]),
    }  # fmt: skip
    if "parts" in row and row["type"] == "MMS_DOWNLOADED":
        shown["attachments"] = _parts(row)
    return {key: value for key, value in shown.items() if value is not None}


@router.get("/inbox", responses=ERRORS, summary="List received messages")
async def list_inbox(
    context: Context,
    user_id: CurrentUser,
    type: Annotated[InboxType | None, Query(description="Only this kind.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many.")] = 50,
    offset: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="Leave out this many newest first.")
    ] = 0,  # SQLite's OFFSET is 64-bit
    since: Annotated[
        Instant | None, Query(alias="from", description="Received at or after.")
    ] = None,
    until: Annotated[
        Instant | None, Query(alias="to", description="Received at or before.")
    ] = None,
    deviceId: Annotated[str | None, Query(max_length=32, description="Only this phone's.")] = None,
    includeAttachments: Annotated[
        bool, Query(description="Attachment metadata of downloaded MMS.")
    ] = False,
) -> JSONResponse:
    """Received SMS, data SMS and MMS, newest first; `X-Total-Count` is the number of matches."""
    wanted = InboxFilter(type, since, until, deviceId)
    rows, total = await inbox.list_inbox(
        context.db, user_id, wanted, limit, offset, with_parts=includeAttachments
    )
    return JSONResponse([item(r) for r in rows], headers={"X-Total-Count": str(total)})


@router.get(
    "/inbox/{id}/attachments/{partId}",
    summary="Download an MMS part",
    responses={**ERRORS, 404: {"model": ErrorBody, "description": "No such attachment."},
               200: {"content": {"application/octet-stream": {}}}},
    response_class=Response,
)  # fmt: skip
async def attachment(
    context: Context,
    user_id: CurrentUser,
    id: Annotated[str, Path(max_length=32, description="The received message's id.")],
    partId: Annotated[int, Path(ge=0, lt=2**31, description="The part, from its `attachments`.")],
) -> Response:
    """The bytes of one part of a downloaded MMS (404 when the phone did not send them)."""
    return download(*await inbox.attachment(context.db, user_id, id, partId))


async def _request(context: Context, user_id: int, body: RefreshIn, delivery: str) -> None:
    span = (body.since, body.until)
    types = body.messageTypes
    await exports.request(context.db, context.hub, user_id, span, body.deviceId, types, delivery)


@router.post(
    "/inbox/refresh",
    status_code=202,
    responses=ERRORS,
    summary="Ask phones to replay received messages",
)
async def refresh(body: RefreshIn, context: Context, user_id: CurrentUser) -> JSONResponse:
    """Ask the phone (or all your phones) to replay received messages in the range; a phone
    offline now gets the request when it next connects.

    Replayed messages land in the inbox; those not stored before go to your webhooks, and
    `webhookDelivery` (or `triggerWebhooks`) says what else is sent once the replay settles.
    """
    delivery = exports.delivery_of(body.webhookDelivery, body.triggerWebhooks)
    await _request(context, user_id, body, delivery)
    return JSONResponse({}, status_code=202)


@router.post(
    "/messages/inbox/export",
    status_code=202,
    responses=ERRORS,
    deprecated=True,
    summary="Ask phones to replay received SMS (old form)",
)
async def export(body: RefreshIn, context: Context, user_id: CurrentUser) -> JSONResponse:
    """Upstream's older form of `POST /inbox/refresh` (scope `messages:export`): always SMS,
    with Individual delivery; answered with `Deprecation: true`."""
    legacy = body.model_copy(update={"messageTypes": ["SMS"]})
    await _request(context, user_id, legacy, "Individual")
    return JSONResponse({}, status_code=202, headers={"Deprecation": "true"})
