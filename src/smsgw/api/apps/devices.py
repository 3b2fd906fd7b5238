"""Routes of the devices API: list the caller's phones, delete one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from fastapi.responses import JSONResponse

from smsgw.api.deps import AppContext, Context, CurrentUser
from smsgw.devices import service as devices
from smsgw.devices.repository import DeviceRecord
from smsgw.devices.schemas import DeviceInfo, DeviceView, SimCard
from smsgw.messages.schemas import ErrorBody

router = APIRouter(tags=["Devices"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong credentials."},
}
DeviceId = Annotated[str, Path(min_length=1, max_length=32, description="The device id.")]


def device_info(context: AppContext, device: DeviceRecord) -> DeviceInfo:
    return DeviceInfo(
        id=device.id,
        name=device.name or "",
        createdAt=device.created_at,
        updatedAt=device.updated_at,
        lastSeen=context.presence.last_seen(device.id, device.last_seen),
        simCards=[SimCard.model_validate(c) for c in device.sim_cards]
        if device.sim_cards
        else None,
        appVersion=device.app_version,
    )


async def list_devices(context: Context, user_id: CurrentUser) -> JSONResponse:
    """Your phones, with when each was last heard from and whether it is connected now."""
    found = await devices.list_devices(context.db, user_id)
    views = [
        DeviceView(
            **device_info(context, d).model_dump(),
            connected=context.hub.is_connected(d.id),
            virtual=d.virtual,
        )
        for d in found
    ]
    return JSONResponse([v.model_dump(mode="json", exclude_none=True) for v in views])


async def delete_device(context: Context, user_id: CurrentUser, id: DeviceId) -> Response:
    """Delete a phone. Its unsent queued messages go to your other phones; pinned ones fail."""
    await devices.delete(context.db, user_id, id)
    context.presence.forget(id)
    return Response(status_code=204)


for prefix, deprecated in (("/devices", False), ("/device", True)):
    router.add_api_route(
        prefix, list_devices, methods=["GET"], response_model=list[DeviceView],
        summary="List phones", responses=ERRORS, deprecated=deprecated,
        operation_id=f"list{prefix.strip('/').title()}",
    )  # fmt: skip
    router.add_api_route(
        f"{prefix}/{{id}}", delete_device, methods=["DELETE"], status_code=204,
        summary="Delete a phone", deprecated=deprecated,
        responses={**ERRORS, 404: {"model": ErrorBody, "description": "No such phone of yours."}},
        operation_id=f"delete{prefix.strip('/').title()}",
    )  # fmt: skip
