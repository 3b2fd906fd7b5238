"""The phone's work: pull messages (claiming them) and report their states."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter

from smsgw.api.deps import Context, CurrentDevice, current_phone_hot
from smsgw.api.fastpath import json_body
from smsgw.api.mobile.device import ERRORS
from smsgw.config import WebhooksMode
from smsgw.context import context_of
from smsgw.devices import service as devices
from smsgw.events import signals
from smsgw.routing import service as routing
from smsgw.routing.budgets import server_limits
from smsgw.routing.repository import Phone
from smsgw.routing.schemas import MobileMessage, StateReportIn, to_mobile
from smsgw.routing.service import RecipientReport, StateReport
from smsgw.webhooks import hub, outbox

router = APIRouter(tags=["Mobile"])


def phone_of(device: devices.DeviceAuth) -> Phone:
    return Phone(device.device_id, device.user_id, device.sim_numbers)


async def pull(
    device: CurrentDevice,
    context: Context,
    order: Annotated[
        Literal["lifo", "fifo"], Query(description="Newest or oldest first.")
    ] = "lifo",
) -> JSONResponse:
    """Messages for this phone: those it holds plus new ones claimed from the queue."""
    phone = phone_of(device)
    told = context.hub.pulling(phone.user_id, phone.device_id)
    limits = server_limits(context.settings)
    claim_cap = context.settings.claim_cap
    pulled = await routing.pull(context.db, phone, order == "lifo", claim_cap, limits)
    spent = pulled.limited and pulled.claimed > 0
    if (pulled.claimed < told or spent) and await routing.has_work_for(context.db, phone):
        # Messages were left to this pull (EventHub.pick_for_new) that it had no room for,
        # or it spent the rest of its budget: tell the next phone (once: a phone told this
        # way leaves nothing to its own pull, and one that claims nothing passes nothing on).
        others = context.hub.devices_of(phone.user_id) - {phone.device_id} if spent else None
        routing.wake(context.hub, phone.user_id, among=others)
    return JSONResponse([to_mobile(item) for item in pulled.items])


async def report(
    request: Request, body: list[StateReportIn], device: CurrentDevice, context: Context
) -> Response:
    """State snapshots from the phone; idempotent, order-tolerant, unknown ids ignored."""
    phone = phone_of(device)
    reports = [
        StateReport(
            ext_id=item.id,
            state=item.state,
            recipients=[RecipientReport(r.phoneNumber, r.state, r.error) for r in item.recipients],
            states=dict(item.states),
        )
        for item in body
    ]
    hub_mode = context.settings.webhooks_mode == WebhooksMode.HUB
    wait = outbox.PostWait(
        hub.posted_state_events(device.app_version),
        context.settings.webhooks_phone_post_wait_seconds,
    )
    reported = await routing.report(context.db, phone, reports, hub_mode, wait, context.settled)
    if reported.events:
        context.signals.emit(signals.OUTBOX_FILLED)  # they go out now, not at the next poll
    limits = server_limits(context.settings)
    if reported.freed and await routing.has_work_for(context.db, phone, limits):
        routing.wake(context.hub, phone.user_id, phone.device_id)
    return Response(status_code=204)


# The fast paths (api/fastpath.py) of the two routes above: a phone's plain pull and report,
# read here and handed to the same endpoints; anything else goes through FastAPI.

_REPORTS = TypeAdapter(list[StateReportIn])
_ORDERS: dict[str, Literal["lifo", "fifo"]] = {"lifo": "lifo", "fifo": "fifo"}


async def fast_pull(request: Request) -> Response | None:
    """`pull` for a request whose only query parameter is at most one valid `order`."""
    orders = request.query_params.getlist("order")
    order = _ORDERS.get(orders[0] if orders else "lifo")
    if len(orders) > 1 or order is None:
        return None
    context = context_of(request)
    return await pull(await current_phone_hot(request, context), context, order)


async def fast_report(request: Request) -> Response | None:
    """`report` for a JSON body that validates (`json_body`). FastAPI parses the JSON before
    it looks at the token, and validates it after: a body that is not JSON is its to answer
    whatever the token; one that is JSON but does not validate is answered by FastAPI too
    (401 for a wrong token, else 400), so checking the token first would gain nothing."""
    body = await json_body(request, _REPORTS)
    if body is None:
        return None
    context = context_of(request)
    return await report(request, body, await current_phone_hot(request, context), context)


#: (method, path under the prefix, fast path) for app.py to install.
FAST_PATHS = [
    (method, path, handler)
    for path in ("/message", "/messages")
    for method, handler in (("GET", fast_pull), ("PATCH", fast_report))
]

for path in ("/message", "/messages"):
    router.add_api_route(
        path, pull, methods=["GET"], response_model=list[MobileMessage], responses=ERRORS,
        summary="Pull messages", include_in_schema=path == "/message",
    )  # fmt: skip
    router.add_api_route(
        path, report, methods=["PATCH"], status_code=204, responses=ERRORS,
        summary="Report message states", include_in_schema=path == "/message",
    )  # fmt: skip
