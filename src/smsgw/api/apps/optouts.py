"""Routes of the opt-out list: list, add, remove (the send path reads it: optouts/service.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse

from smsgw.api.deps import Context, CurrentUser
from smsgw.messages.schemas import ErrorBody
from smsgw.optouts import service as optouts
from smsgw.optouts.schemas import OptOutIn, OptOutView, view

router = APIRouter(tags=["Opt-outs"])
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid parameter or body."},
    401: {"model": ErrorBody, "description": "Missing or wrong credentials."},
}
#: As `GET /messages`: a larger `limit` is served as this (`X-Limit` says so).
MAX_PAGE = 100


@router.get(
    "/opt-outs", response_model=list[OptOutView], responses=ERRORS, summary="List opted-out numbers"
)
async def list_opt_outs(
    context: Context,
    user_id: CurrentUser,
    limit: Annotated[
        int, Query(ge=1, description="Page size; above 100 is served as 100 (`X-Limit`).")
    ] = 20,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1, description="Skip this many.")] = 0,
) -> JSONResponse:
    """The numbers your messages are not sent to, newest first; `X-Total-Count` counts them."""
    limit = min(limit, MAX_PAGE)
    records, total = await optouts.list_page(context.db, user_id, limit, offset)
    headers = {"X-Total-Count": str(total), "X-Limit": str(limit)}
    return JSONResponse([view(r) for r in records], headers=headers)


@router.post(
    "/opt-outs", status_code=201, response_model=OptOutView,
    responses={**ERRORS, 200: {"model": OptOutView, "description": "Listed already."}},
    summary="Add a number to the opt-out list",
)  # fmt: skip
async def add_opt_out(body: OptOutIn, context: Context, user_id: CurrentUser) -> JSONResponse:
    """Stop sending to a number: a later message to it is accepted, and that recipient
    fails with "recipient opted out". `201` when added, `200` when it was listed already
    (its entry unchanged)."""
    region = context.settings.default_region
    record, added = await optouts.add(context.db, region, user_id, body.phoneNumber, optouts.API)
    return JSONResponse(view(record), status_code=201 if added else 200)


@router.delete(
    "/opt-outs/{phoneNumber}", status_code=204,
    responses={**ERRORS, 404: {"model": ErrorBody, "description": "The number is not listed."}},
    summary="Remove a number from the opt-out list",
)  # fmt: skip
async def remove_opt_out(
    context: Context,
    user_id: CurrentUser,
    phoneNumber: Annotated[
        str,
        Path(min_length=1, max_length=128, description="The number, in any form that reads as it."),
    ],
) -> Response:
    """Send to a number again (`+` may be written `%2B`)."""
    region = context.settings.default_region
    await optouts.remove(context.db, region, user_id, phoneNumber)
    return Response(status_code=204)
