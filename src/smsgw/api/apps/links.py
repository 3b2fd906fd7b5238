"""Routes of the links API (smsgw's extension): your carrier links with their session's
state, throughput, window, queue depth and the parts they submitted of late."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from smsgw.api.deps import Context, CurrentUser
from smsgw.links import activity
from smsgw.links.activity import LinkStatus
from smsgw.links.schemas import LinkQueue, LinkRecent, LinkView
from smsgw.messages.schemas import ErrorBody

router = APIRouter(tags=["Devices"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong credentials."},
    403: {"model": ErrorBody, "description": "A token without the scope `devices:list`."},
}
LinkId = Annotated[str, Path(min_length=1, max_length=32, description="The link's id.")]


def link_view(status: LinkStatus) -> dict[str, Any]:
    """The wire form of a link: its settings but the password, and its status."""
    link, recent = status.link, status.recent
    view = LinkView(
        id=link.device_id, name=link.name or "", kind=link.kind, host=link.host,
        port=link.port, systemId=link.system_id, systemType=link.system_type,
        source=link.source_addr, sourceTon=link.source_ton, sourceNpi=link.source_npi,
        throughput=link.throughput, window=link.window, dataCoding=link.data_coding,
        state=link.state, detail=link.detail, stateSince=link.state_at,
        queue=LinkQueue(waiting=status.waiting, planned=status.planned,
                        inFlight=status.in_flight),
        recent=LinkRecent(
            since=recent.since, submitted=recent.submitted, accepted=recent.accepted,
            delivered=recent.delivered, undelivered=recent.undelivered,
            rejected=recent.rejected, noAnswer=recent.no_answer, lastMinute=recent.last_minute,
        ),
    )  # fmt: skip
    body: dict[str, Any] = view.model_dump(mode="json")
    return body


@router.get(
    "/links", response_model=list[LinkView], summary="List carrier links", responses=ERRORS,
    operation_id="listLinks",
)  # fmt: skip
async def list_links(context: Context, user_id: CurrentUser) -> JSONResponse:
    """Your carrier links (SMPP; docs/links.md), oldest first: settings (never the
    password), the session's state and why, queue depth and the last 24 hours' parts."""
    found = await activity.of_user(context.db, user_id)
    return JSONResponse([link_view(status) for status in found])


@router.get(
    "/links/{id}", response_model=LinkView, summary="Get a carrier link",
    responses={**ERRORS, 404: {"model": ErrorBody, "description": "No such link of yours."}},
    operation_id="getLink",
)  # fmt: skip
async def get_link(context: Context, user_id: CurrentUser, id: LinkId) -> JSONResponse:
    """One of your carrier links, as `GET /links` lists it."""
    return JSONResponse(link_view(await activity.one(context.db, user_id, id)))
