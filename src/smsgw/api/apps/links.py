"""Routes of the links API (smsgw's extension): your carrier links with their session's
state, throughput, window, queue depth and the parts they submitted of late; add one (the
CLI's and the dashboard's rules: links/schemas.py), delete one."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from starlette.convertors import StringConvertor, register_url_convertor

from smsgw.accounts import service as accounts
from smsgw.api.deps import Context, CurrentUser
from smsgw.events.user_feed import notify
from smsgw.links import activity
from smsgw.links import service as links
from smsgw.links.activity import LinkStatus
from smsgw.links.schemas import LinkIn, LinkQueue, LinkRecent, LinkView
from smsgw.messages.schemas import ErrorBody

router = APIRouter(tags=["Devices"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong credentials."},
    403: {"model": ErrorBody, "description": "A token without the scope `devices:list`."},
}
NOT_YOURS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such link of yours."}
}
LOCATION = {"Location": {"description": "URL of the new link", "schema": {"type": "string"}}}


class LinkIdConvertor(StringConvertor):
    """A link's id as a path segment, never `routing`: `/links/routing` is the routing rule's
    (else DELETE on it would look for a link named "routing" and `Allow` would list DELETE)."""

    regex = "(?!routing$)[^/]+"


register_url_convertor("link_id", LinkIdConvertor())
LinkId = Annotated[str, Path(min_length=1, max_length=32, description="The link's id.")]


def link_view(status: LinkStatus) -> dict[str, Any]:
    """The wire form of a link: its settings but the password, and its status."""
    link, recent = status.link, status.recent
    view = LinkView(
        id=link.device_id, name=link.name or "", kind=link.kind, host=link.host,
        port=link.port, systemId=link.system_id, systemType=link.system_type,
        source=link.source_addr, sourceTon=link.source_ton, sourceNpi=link.source_npi,
        throughput=link.throughput, window=link.window, dataCoding=link.data_coding,
        bindMode=link.bind_mode, allAccounts=link.all_accounts, state=link.state,
        detail=link.detail, stateSince=link.state_at,
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
    responses={**ERRORS, **NOT_YOURS}, operation_id="getLink",
)  # fmt: skip
async def get_link(context: Context, user_id: CurrentUser, id: LinkId) -> JSONResponse:
    """One of your carrier links, as `GET /links` lists it."""
    return JSONResponse(link_view(await activity.one(context.db, user_id, id)))


@router.post(
    "/links", status_code=201, response_model=LinkView, summary="Add a carrier link",
    responses={
        **ERRORS,
        201: {"description": "Added: the link as `GET /links/{id}` shows it.", "headers": LOCATION},
        400: {"model": ErrorBody, "description": "A setting breaks its rule; each is named."},
        403: {"model": ErrorBody, "description": "A token without the scope `devices:write`."},
    },
    operation_id="createLink",
)  # fmt: skip
async def create_link(
    body: LinkIn, request: Request, context: Context, user_id: CurrentUser
) -> JSONResponse:
    """Add an SMPP link (a transceiver bind, or a transmitter and a receiver: `bindMode`) to
    your account, with the settings the CLI's
    `smsgw links add smpp` and the dashboard take: from then on it takes your queued
    messages like one more phone. The server binds it within seconds (`state`)."""
    login = await accounts.login_of(context.db, user_id)
    link_id = await links.add(context.db, user_id, login, body.name, body.settings())
    notify(context.db, user_id)
    location = f"{request.scope['path'].rstrip('/')}/{quote(link_id, safe='')}"
    shown = link_view(await activity.one(context.db, user_id, link_id))
    return JSONResponse(shown, status_code=201, headers={"Location": location})


@router.delete(
    "/links/{id:link_id}", status_code=204, summary="Delete a carrier link",
    responses={
        **ERRORS, **NOT_YOURS,
        403: {"model": ErrorBody, "description": "A token without the scope `devices:delete`."},
    },
    operation_id="deleteLink",
)  # fmt: skip
async def delete_link(context: Context, user_id: CurrentUser, id: LinkId) -> Response:
    """Delete one of your carrier links: its queued messages not yet planned go back to the
    queue (as for a deleted phone); the server unbinds it within seconds."""
    await links.delete(context.db, id, user_id)
    context.forget_sender(id)
    notify(context.db, user_id)
    return Response(status_code=204)
