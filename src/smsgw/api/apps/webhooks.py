"""Routes of the webhooks API: register (upsert by id), list, delete, the delivery log and
the signing key. Changes tell the affected phones (`WebhooksUpdated`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from fastapi.responses import JSONResponse

from smsgw.api.deps import Context, CurrentUser
from smsgw.messages.schemas import ErrorBody
from smsgw.webhooks import service as webhooks
from smsgw.webhooks.repository import WebhookRecord
from smsgw.webhooks.schemas import AttemptView, SigningKeyView, WebhookIn, WebhookView

router = APIRouter(tags=["Webhooks"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong credentials."},
}
WebhookId = Annotated[str, Path(min_length=1, max_length=36, description="The webhook id.")]


def view(record: WebhookRecord) -> dict[str, Any]:
    shown = WebhookView(
        id=record.ext_id, deviceId=record.device_id, url=record.url, event=record.event,
        enabled=record.disabled_at is None, disabledReason=record.disabled_reason,
    )  # fmt: skip
    return shown.model_dump(mode="json")


@router.get(
    "/webhooks", response_model=list[WebhookView], responses=ERRORS, summary="List webhooks"
)
async def list_webhooks(context: Context, user_id: CurrentUser) -> JSONResponse:
    """Your webhooks (`enabled` is false after a receiver answered 410 Gone)."""
    return JSONResponse([view(r) for r in await webhooks.list_webhooks(context.db, user_id)])


@router.post(
    "/webhooks", status_code=201, response_model=WebhookView,
    responses={**ERRORS, 400: {"model": ErrorBody, "description": "Invalid webhook."}},
    summary="Register a webhook",
)  # fmt: skip
async def register_webhook(body: WebhookIn, context: Context, user_id: CurrentUser) -> JSONResponse:
    """Create a webhook, or replace the one with the same `id` (which re-enables it)."""
    allow = context.settings.webhooks_allow_private_urls
    changed = await webhooks.register(context.db, user_id, body, allow)
    webhooks.tell_phones(context.hub, user_id, changed.device_id)
    return JSONResponse(view(changed.webhook), status_code=201)


@router.delete("/webhooks/{id}", status_code=204, responses=ERRORS, summary="Delete a webhook")
async def delete_webhook(context: Context, user_id: CurrentUser, id: WebhookId) -> Response:
    """Delete a webhook (204 also when there was none); undelivered events are dropped."""
    if await webhooks.delete(context.db, user_id, id):
        webhooks.tell_phones(context.hub, user_id, None)
    return Response(status_code=204)


@router.get(
    "/webhooks/{id}/deliveries", response_model=list[AttemptView],
    responses={**ERRORS, 404: {"model": ErrorBody, "description": "No such webhook of yours."}},
    summary="List a webhook's delivery attempts",
)  # fmt: skip
async def deliveries(context: Context, user_id: CurrentUser, id: WebhookId) -> JSONResponse:
    """The webhook's last 100 delivery attempts, newest first."""
    rows = await webhooks.attempts(context.db, user_id, id)
    shown = [
        AttemptView(
            eventId=row["event_id"], event=row["event"], startedAt=row["started_at"],
            finishedAt=row["finished_at"], statusCode=row["status_code"],
            durationMs=row["duration_ms"], error=row["error"],
        ).model_dump(mode="json")
        for row in rows
    ]  # fmt: skip
    return JSONResponse(shown)


@router.get(
    "/webhooks/signing/key",
    response_model=SigningKeyView,
    responses=ERRORS,
    summary="Get the signing key",
)
async def get_signing_key(context: Context, user_id: CurrentUser) -> JSONResponse:
    """The key your webhooks are signed with (`X-Signature`)."""
    return JSONResponse({"signingKey": await webhooks.signing_key(context.db, user_id)})


@router.post(
    "/webhooks/signing/key",
    response_model=SigningKeyView,
    responses=ERRORS,
    summary="Replace the signing key",
)
async def rotate_signing_key(context: Context, user_id: CurrentUser) -> JSONResponse:
    """Replace your signing key with a new one; requests from now on use the new key."""
    key = await webhooks.signing_key(context.db, user_id, rotate=True)
    return JSONResponse({"signingKey": key})
