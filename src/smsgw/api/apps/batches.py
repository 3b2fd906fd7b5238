"""`POST /batch/messages`: many messages in one request, each queued or refused on its own."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from smsgw.api.apps.messages import (
    COMMON_ERRORS,
    DEVICE_ACTIVE_WITHIN,
    GUARDED,
    SKIP_PHONE_VALIDATION,
)
from smsgw.api.deps import Context, CurrentUser
from smsgw.api.errors import describe_validation
from smsgw.bulk.sending import Outcome, send_many
from smsgw.context import AppContext
from smsgw.domain.errors import DomainError, status_of
from smsgw.domain.states import ProcessingState
from smsgw.events import signals
from smsgw.messages import service
from smsgw.messages.repository import MessageRecord
from smsgw.messages.schemas import SendMessageRequest
from smsgw.routing import service as routing

router = APIRouter(tags=["Messages"])
#: Most messages one request takes.
MAX_ITEMS = 1000


class BatchRequest(BaseModel):
    messages: list[Annotated[dict[str, Any], Field(description="A `POST /messages` body.")]] = (
        Field(
            min_length=1,
            max_length=MAX_ITEMS,
            description=f"1 to {MAX_ITEMS} messages, each a `POST /messages` body, each checked "
            "and queued on its own: one that breaks a rule is refused in its result, not the "
            "whole request.",
        )
    )


class ItemError(BaseModel):
    status: int = Field(description="The status `POST /messages` answers for it (400, 409).")
    message: str


class ItemResult(BaseModel):
    index: int = Field(description="The item's position in `messages`, from 0.")
    id: str | None = Field(description="The message's id (yours when given); null if refused "
                           "without a usable id.")  # fmt: skip
    state: ProcessingState | None = Field(description="Its state once queued; null if refused.")
    error: ItemError | None = Field(description="Why it was refused; null when queued.")


class BatchResult(BaseModel):
    accepted: int = Field(description="How many messages were queued.")
    failed: int = Field(description="How many were refused.")
    items: list[ItemResult] = Field(description="One result per message, in request order.")


def _refusal(index: int, item: dict[str, Any], status: int, message: str) -> dict[str, Any]:
    given = item.get("id")
    return {
        "index": index,
        "id": given if isinstance(given, str) and 0 < len(given) <= 36 else None,
        "state": None,
        "error": {"status": status, "message": message},
    }


def _command(body: SendMessageRequest, skip: bool, within: int) -> service.SendCommand:
    return service.SendCommand(
        phone_numbers=body.phoneNumbers,
        text=body.textMessage.text if body.textMessage else body.message,
        data=body.dataMessage.data if body.dataMessage else None,
        port=body.dataMessage.port if body.dataMessage else None,
        ext_id=body.id, device_id=body.deviceId, is_encrypted=body.isEncrypted,
        sim_number=body.simNumber, with_delivery_report=body.withDeliveryReport,
        priority=body.priority, ttl=body.ttl, valid_until=body.validUntil,
        schedule_at=body.scheduleAt, skip_phone_validation=skip,
        device_active_within_hours=within,
    )  # fmt: skip


def _wake(context: AppContext, user_id: int, records: list[MessageRecord]) -> None:
    """Wake phones for the queued messages as `POST /messages` does, once per batch: each
    pinned phone, and as many of the owner's phones as the rest fills at the claim cap."""
    pending = [r for r in records if r.state == ProcessingState.PENDING]
    cap = context.settings.claim_cap
    for device_id in {r.device_id for r in pending if r.device_id is not None}:
        routing.wake_for_new(context.hub, user_id, device_id, cap)
    unpinned = sum(1 for r in pending if r.device_id is None)
    if unpinned:
        routing.wake(context.hub, user_id, count=math.ceil(unpinned / cap))
    if any(recipient.error for r in records for recipient in r.recipients):
        context.signals.emit(signals.OUTBOX_FILLED)  # opted out: sms:failed is due


@router.post(
    "/batch/messages",
    response_model=BatchResult,
    summary="Queue many SMS in one request",
    operation_id="sendMessagesBatch",
    dependencies=GUARDED,
    responses={**COMMON_ERRORS, 200: {"description": "One result per message"}},
)
async def send_batch(
    body: BatchRequest,
    context: Context,
    user_id: CurrentUser,
    skip_phone_validation: Annotated[
        bool, Query(alias="skipPhoneValidation", description=SKIP_PHONE_VALIDATION)
    ] = False,
    device_active_within: Annotated[
        int, Query(alias="deviceActiveWithin", ge=0, le=8760, description=DEVICE_ACTIVE_WITHIN)
    ] = 0,
) -> JSONResponse:
    """Queue up to 1000 messages, each a `POST /messages` body checked and queued on its own
    (the query applies to each): `200` with one result per message, in order, `error` null
    for those queued (committed, as `POST /messages` commits one) and `{status, message}` for
    those refused, with the status and message `POST /messages` would have answered (`400`,
    or `409` for an `id` already used, also earlier in the same request)."""
    results: list[dict[str, Any] | None] = [None] * len(body.messages)
    commands: list[tuple[int, service.SendCommand]] = []
    for index, item in enumerate(body.messages):
        try:
            parsed = SendMessageRequest.model_validate(item)
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            message = describe_validation(errors, "application/json")
            results[index] = _refusal(index, item, 400, message)
            continue
        commands.append((index, _command(parsed, skip_phone_validation, device_active_within)))
    region = context.settings.default_region
    sent = await send_many(context.db, region, user_id, [command for _, command in commands])
    for (index, _), outcome in zip(commands, sent, strict=True):
        results[index] = _result(index, body.messages[index], outcome)
    _wake(context, user_id, [one for one in sent if isinstance(one, MessageRecord)])
    failed = sum(1 for result in results if result and result["error"] is not None)
    return JSONResponse({"accepted": len(results) - failed, "failed": failed, "items": results})


def _result(index: int, item: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, DomainError):
        return _refusal(index, item, status_of(outcome), outcome.message)
    return {"index": index, "id": outcome.id, "state": outcome.state, "error": None}
