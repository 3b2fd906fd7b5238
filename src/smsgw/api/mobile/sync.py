"""What the phone syncs: its settings (its webhooks: api/mobile/hooks.py)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from smsgw.accountsettings import service as account_settings
from smsgw.api.deps import Context, CurrentDevice
from smsgw.api.mobile.device import ERRORS

router = APIRouter(tags=["Mobile"])


@router.get("/settings", responses=ERRORS, summary="Get the settings a phone applies")
async def settings(device: CurrentDevice, context: Context) -> JSONResponse:
    """Settings the phone applies: its owner's account settings, secrets included, with
    what smsgw requires of every phone (Server-Sent Events) on top."""
    return JSONResponse(await account_settings.for_phone(context.db, device.user_id))
