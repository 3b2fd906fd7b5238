"""The dashboard's API tokens: list the live ones, issue a scoped pair (shown once), revoke.

The same TokenService the API's `/auth/token` routes use. A signed-in owner may grant any
scope of the catalogue (as Basic credentials may); tokens are shown only in the answer to
the form that issued them, never listed, logged or stored.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from smsgw.domain.errors import InvalidInput
from smsgw.tokens import scopes
from smsgw.tokens.service import TokenService
from smsgw.web.common import (
    FORM_EXPIRED,
    Visitor,
    checked_form,
    error_page,
    field,
    redirect,
    render,
    visitor,
)

router = APIRouter()
#: The catalogue as the form offers it: the wildcard last, `tokens:refresh` never.
CATALOGUE = [*sorted(scopes.KNOWN - {scopes.ALL}), scopes.ALL]
UNAVAILABLE = "API tokens are not available on this server."
NOTICES = {"revoked": "Token revoked; it no longer works, nor does its refresh token."}


def service_of(who: Visitor) -> TokenService | None:
    return who.context.tokens


async def tokens_page(request: Request, who: Visitor, status: int = 200, **values: Any) -> Response:
    service = service_of(who)
    if service is None:
        return error_page(request, 404, UNAVAILABLE, who)
    values.setdefault("chosen", [])
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return render(
        request, "tokens.html", status=status, who=who, tokens=await service.list_live(who.user_id),
        catalogue=CATALOGUE, max_ttl=who.context.settings.jwt_access_ttl_seconds, notice=notice,
        **values,
    )  # fmt: skip


@router.get("/dashboard/tokens")
async def show_tokens(request: Request) -> Response:
    return await tokens_page(request, await visitor(request))


def parse_ttl(text: str) -> int | None:
    """The optional lifetime in seconds; InvalidInput naming the field when it is not one."""
    if not text:
        return None
    if not re.fullmatch(r"[0-9]{1,10}", text):  # str.isdigit would pass "²", int() not
        raise InvalidInput("Lifetime: must be a whole number of seconds")
    return int(text)


@router.post("/dashboard/tokens")
async def issue_token(request: Request) -> Response:
    who = await visitor(request)
    form = await checked_form(request, who)
    if form is None:
        return await tokens_page(request, who, 403, error=FORM_EXPIRED)
    service = service_of(who)
    if service is None:
        return error_page(request, 404, UNAVAILABLE, who)
    chosen = [value for value in form.getlist("scope") if isinstance(value, str)]
    ttl_text = field(form, "ttl")
    try:
        granted, ttl = scopes.check_requested(chosen), parse_ttl(ttl_text)
    except InvalidInput as error:
        message = error.message.replace("scopes:", "Scopes:", 1)
        return await tokens_page(request, who, 400, error=message, chosen=chosen, ttl=ttl_text)
    pair = await service.issue(who.user_id, granted, ttl)
    return await tokens_page(request, who, issued=pair, issued_scopes=granted)


@router.post("/dashboard/tokens/{jti}/revoke")
async def revoke_token(request: Request, jti: str) -> Response:
    who = await visitor(request)
    if await checked_form(request, who) is None:
        return error_page(request, 403, FORM_EXPIRED, who)
    service = service_of(who)
    if service is None:
        return error_page(request, 404, UNAVAILABLE, who)
    if jti not in {token.id for token in await service.list_live(who.user_id)}:
        return error_page(request, 404, "No such live token of yours.", who)
    await service.revoke(who.user_id, jti)
    return redirect("/dashboard/tokens?notice=revoked")
