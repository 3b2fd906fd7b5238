"""What the phone syncs: its settings (its webhooks: api/mobile/hooks.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from smsgw.api.deps import CurrentDevice
from smsgw.api.mobile.device import ERRORS

router = APIRouter(tags=["Mobile"])

#: Settings every phone gets: use Server-Sent Events rather than Firebase, which a
#: self-hosted server cannot reach.
PHONE_SETTINGS: dict[str, Any] = {"gateway": {"notification_channel": "SSE_ONLY"}}


@router.get("/settings", responses=ERRORS)
async def settings(device: CurrentDevice) -> JSONResponse:
    """Settings the phone applies."""
    return JSONResponse(PHONE_SETTINGS)
