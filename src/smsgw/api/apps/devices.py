"""Routes of the devices API: list the caller's phones, set a phone's budget, delete one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from fastapi.responses import JSONResponse

from smsgw.api.deps import AppContext, Context, CurrentUser
from smsgw.devices import service as devices
from smsgw.devices.repository import DeviceRecord
from smsgw.devices.schemas import (
    BudgetView,
    DeviceChange,
    DeviceInfo,
    DeviceView,
    OwnBudget,
    SimCard,
)
from smsgw.messages.schemas import ErrorBody
from smsgw.routing import budgets
from smsgw.routing.budgets import BudgetUsage

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


def budget_view(used: BudgetUsage) -> BudgetView:
    return BudgetView(
        perMinute=used.minute_limit,
        perDay=used.day_limit,
        usedThisMinute=used.minute_used,
        usedToday=used.day_used,
        own=OwnBudget(perMinute=used.own_per_minute, perDay=used.own_per_day),
    )


def device_view(
    context: AppContext, device: DeviceRecord, used: BudgetUsage | None
) -> dict[str, Any]:
    """The wire form of a phone: upstream's keys without nulls, and smsgw's extensions."""
    view = DeviceView(
        **device_info(context, device).model_dump(),
        connected=context.hub.is_connected(device.id),
        virtual=device.virtual,
    )
    body = view.model_dump(mode="json", exclude_none=True)
    if used is not None:  # its own limits are null when they follow the server's
        body["budget"] = budget_view(used).model_dump(mode="json")
    return body


async def list_devices(context: Context, user_id: CurrentUser) -> JSONResponse:
    """Your phones, with when each was last heard from, whether it is connected now, and
    how close each is to its budget (smsgw's extension)."""
    found = await devices.list_devices(context.db, user_id)
    usage = await budgets.usage(context.db, user_id, budgets.server_limits(context.settings))
    return JSONResponse([device_view(context, d, usage.get(d.id)) for d in found])


async def change_device(
    context: Context, user_id: CurrentUser, id: DeviceId, body: DeviceChange
) -> JSONResponse:
    """Set a phone's own budget: SMS parts per minute and per UTC day (0: no limit; null:
    the server's default; a key left out stays as it is). smsgw's extension."""
    limits = {
        _KEYS[key]: value for key, value in body.budget.model_dump(exclude_unset=True).items()
    }
    device = await devices.set_budget(context.db, user_id, id, limits)
    usage = await budgets.usage(context.db, user_id, budgets.server_limits(context.settings))
    return JSONResponse(device_view(context, device, usage.get(device.id)))


_KEYS = {"perMinute": "per_minute", "perDay": "per_day"}


async def delete_device(context: Context, user_id: CurrentUser, id: DeviceId) -> Response:
    """Delete a phone. Its unsent queued messages go to your other phones; pinned ones fail."""
    await devices.delete(context.db, user_id, id)
    context.forget_sender(id)
    return Response(status_code=204)


for prefix, deprecated in (("/devices", False), ("/device", True)):
    router.add_api_route(
        prefix, list_devices, methods=["GET"], response_model=list[DeviceView],
        summary="List phones", responses=ERRORS, deprecated=deprecated,
        operation_id=f"list{prefix.strip('/').title()}",
    )  # fmt: skip
    router.add_api_route(
        f"{prefix}/{{id}}", change_device, methods=["PATCH"], response_model=DeviceView,
        summary="Set a phone's budget", deprecated=deprecated,
        responses={
            **ERRORS,
            400: {"model": ErrorBody, "description": "A limit out of range or not a whole number."},
            404: {"model": ErrorBody, "description": "No such phone of yours."},
        },
        operation_id=f"change{prefix.strip('/').title()}",
    )  # fmt: skip
    router.add_api_route(
        f"{prefix}/{{id}}", delete_device, methods=["DELETE"], status_code=204,
        summary="Delete a phone", deprecated=deprecated,
        responses={**ERRORS, 404: {"model": ErrorBody, "description": "No such phone of yours."}},
        operation_id=f"delete{prefix.strip('/').title()}",
    )  # fmt: skip
