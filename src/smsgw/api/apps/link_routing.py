"""Routes of the account's routing rule between its phones and its carrier links: read it,
set it (routing/rules.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from smsgw.api.deps import Context, CurrentUser
from smsgw.messages.schemas import ErrorBody
from smsgw.routing import rules
from smsgw.routing.rules import Rule
from smsgw.routing.schemas import RoutingRuleIn, RoutingRuleView

router = APIRouter(tags=["Carrier links"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong credentials."},
}


def view(rule: Rule) -> dict[str, Any]:
    shown = RoutingRuleView(
        mode=rule.mode.value, prefixes=list(rule.prefixes), failoverAfter=rule.failover_after
    )
    return shown.model_dump()


@router.get(
    "/links/routing", response_model=RoutingRuleView, responses=ERRORS,
    summary="Get the routing rule between phones and links",
)  # fmt: skip
async def get_routing(context: Context, user_id: CurrentUser) -> JSONResponse:
    """Which of your senders take your queued messages: `shared` when never set."""
    return JSONResponse(view(await rules.get(context.db, user_id)))


@router.put(
    "/links/routing", response_model=RoutingRuleView,
    responses={**ERRORS, 400: {"model": ErrorBody, "description": "A field is invalid; named."}},
    summary="Set the routing rule between phones and links",
)  # fmt: skip
async def put_routing(body: RoutingRuleIn, context: Context, user_id: CurrentUser) -> JSONResponse:
    """Replace your routing rule (fields left out: no prefixes, no failover). Claims from
    now on follow it; a message a sender already took stays with it."""
    rule = rules.checked(body.mode, body.prefixes, body.failoverAfter)
    return JSONResponse(view(await rules.put(context.db, user_id, rule)))
