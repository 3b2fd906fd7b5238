"""The hub endpoints phones post their webhooks to, and the list telling them where."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from smsgw.api.deps import AppContext, Context, CurrentDevice, bearer_token
from smsgw.api.mobile.device import ERRORS
from smsgw.config import WebhooksMode
from smsgw.devices.service import token_hash
from smsgw.domain.errors import InvalidInput, Unauthorized
from smsgw.webhooks import hub
from smsgw.webhooks import service as webhooks
from smsgw.workers import webhooks as webhook_worker

router = APIRouter(tags=["Mobile"])
HOOK_PATH = "/hooks/{device_id}/{secret}"


def hook_url(request: Request, base: str | None, device_id: str, secret: str) -> str:
    """This phone's hub URL: under `SMSGW_PUBLIC_URL`, else the URL the phone used."""
    prefix = request.url.path.removesuffix("/webhooks")
    root = base or str(request.base_url).rstrip("/")
    return f"{root}{prefix}/hooks/{device_id}/{secret}"


def _derive(context: AppContext) -> webhooks.Derive:
    """The server-keyed digest hook secrets are made with (the app always builds it)."""
    assert context.tokens is not None
    return context.tokens.derive


@router.get("/webhooks", responses=ERRORS, summary="List the webhooks a phone posts to")
async def phone_webhooks(request: Request, device: CurrentDevice, context: Context) -> JSONResponse:
    """Where this phone posts its events (see docs/webhooks.md, hub and direct modes)."""
    token = bearer_token(request) or ""
    secret = webhooks.hook_secret(_derive(context), token_hash(token))
    url = hook_url(request, context.settings.public_url, device.device_id, secret)
    records = await webhooks.for_phone(context.db, device.user_id, device.device_id)
    direct = context.settings.webhooks_mode == WebhooksMode.DIRECT
    return JSONResponse(hub.phone_hooks(url, records, direct))


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise InvalidInput("malformed JSON body") from None


@router.post(HOOK_PATH, status_code=204, responses=ERRORS, summary="Post a phone's event")
async def phone_post(
    request: Request,
    context: Context,
    device_id: Annotated[str, Path(max_length=32, description="The phone's id.")],
    secret: Annotated[
        str, Path(max_length=64, description="The secret of the URL `GET /webhooks` gave.")
    ],
) -> Response:
    """An event the phone emits; the URL's secret is its credential."""
    user_id = await webhooks.phone_of_hook(context.db, _derive(context), device_id, secret)
    if user_id is None:
        raise Unauthorized("Unauthorized")
    deliver = context.settings.webhooks_mode == WebhooksMode.HUB
    await hub.accept(context.db, user_id, device_id, await _json(request), deliver)
    webhook_worker.poke(request.app.state)
    return Response(status_code=204)
