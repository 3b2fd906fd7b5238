"""Routes of the account settings API: read, merge (PATCH), replace (PUT)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from pydantic import WithJsonSchema

from smsgw.accountsettings import service as account_settings
from smsgw.accountsettings.schemas import DOCUMENT_SCHEMA
from smsgw.api.deps import Context, CurrentPrincipal, CurrentUser, demand
from smsgw.messages.schemas import ErrorBody

router = APIRouter(tags=["Settings"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong credentials."},
}
CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"model": ErrorBody, "description": "A setting is unknown or invalid; named."},
}
SettingsBody = Annotated[
    Any,
    Body(
        description="Sections of settings (see docs/api.md for the keys).",
        examples=[{"messages": {"limit_period": "PerMinute", "limit_value": 10}}],
    ),
    WithJsonSchema(DOCUMENT_SCHEMA),
]


@router.get("/settings", summary="Get account settings", responses=ERRORS)
async def get_settings(context: Context, user_id: CurrentUser) -> JSONResponse:
    """The settings your phones get; `encryption.passphrase` and `webhooks.signing_key` are
    write-only and never shown."""
    return JSONResponse(await account_settings.get(context.db, user_id))


def _guard_signing_key(principal: CurrentPrincipal, body: Any) -> None:
    """Setting `webhooks.signing_key` chooses the key webhooks are signed with: it also needs
    `webhooks:write`, the scope that reads and rotates that key."""
    section = body.get("webhooks") if isinstance(body, dict) else None
    if isinstance(section, dict) and "signing_key" in section:
        demand(principal, "webhooks:write")


@router.patch("/settings", summary="Change account settings", responses=CHANGE_ERRORS)
async def patch_settings(
    context: Context, principal: CurrentPrincipal, body: SettingsBody
) -> JSONResponse:
    """Merge the given keys into your settings (other keys stay) and tell your phones.
    Setting `webhooks.signing_key` also needs the `webhooks:write` scope."""
    _guard_signing_key(principal, body)
    result = await account_settings.update(
        context.db, context.hub, principal.user_id, body, replace=False
    )
    return JSONResponse(result)


@router.put("/settings", summary="Replace account settings", responses=CHANGE_ERRORS)
async def put_settings(
    context: Context, principal: CurrentPrincipal, body: SettingsBody
) -> JSONResponse:
    """Replace all your settings with the given ones and tell your phones.
    Setting `webhooks.signing_key` also needs the `webhooks:write` scope."""
    _guard_signing_key(principal, body)
    result = await account_settings.update(
        context.db, context.hub, principal.user_id, body, replace=True
    )
    return JSONResponse(result)
