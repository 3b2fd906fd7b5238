"""Token routes: issue a scoped access token (+ refresh token), refresh it once, revoke it.

Status codes and bodies as upstream (201 with the pair, 204 on revoke), in both spellings
the clients read (see DESIGN.md). The router guard (deps.authorize) has already checked the
scope each route needs (api/scopes.py): `tokens:manage`, or exactly `tokens:refresh`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from fastapi.responses import JSONResponse
from starlette.convertors import StringConvertor, register_url_convertor

from smsgw.api.deps import AppContext, Context, CurrentPrincipal, bearer_auth
from smsgw.domain.clock import format_timestamp
from smsgw.domain.errors import Forbidden, Unauthorized
from smsgw.messages.schemas import ErrorBody
from smsgw.tokens import scopes
from smsgw.tokens.schemas import TokenRequest, TokenResponse
from smsgw.tokens.service import IssuedPair, TokenService

router = APIRouter(tags=["Auth"])


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("Missing, wrong, expired or revoked credentials."),
    403: _error("The credentials lack the scope this needs (`scope required: <scope>`)."),
}


class TokenIdConvertor(StringConvertor):
    """A jti path segment, never `refresh`: `/auth/token/refresh` is the refresh route only
    (else DELETE on it would revoke a token named "refresh" and `Allow` would list DELETE)."""

    regex = "(?!refresh$)[^/]+"


register_url_convertor("token_id", TokenIdConvertor())
TokenId = Annotated[str, Path(min_length=1, max_length=32, description="The token's jti.")]


def _service(context: AppContext) -> TokenService:
    if context.tokens is None:
        raise Unauthorized("Unauthorized: tokens are not available on this server")
    return context.tokens


def _answer(pair: IssuedPair) -> JSONResponse:
    expires = format_timestamp(pair.expires_at)
    body = {
        "id": pair.id,
        "token_type": "Bearer",
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "expires_at": expires,
        "tokenType": "Bearer",
        "accessToken": pair.access_token,
        "refreshToken": pair.refresh_token,
        "expiresAt": expires,
    }
    return JSONResponse(body, status_code=201)


@router.post(
    "/auth/token",
    status_code=201,
    response_model=TokenResponse,
    summary="Get an access token",
    responses={**ERRORS, 400: _error("Unknown scope or invalid ttl.")},
)
async def issue_token(
    body: TokenRequest, context: Context, principal: CurrentPrincipal
) -> JSONResponse:
    """A short-lived access token with the scopes asked for (only scopes you hold yourself;
    Basic credentials hold all), and a refresh token to renew it once."""
    wanted = scopes.check_requested(body.scopes)
    for scope in wanted:
        if not scopes.grants(principal.scopes, scope):
            raise Forbidden(f"scope required: {scope}")
    pair = await _service(context).issue(principal.user_id, wanted, body.ttl)
    return _answer(pair)


@router.post(
    "/auth/token/refresh",
    status_code=201,
    response_model=TokenResponse,
    summary="Exchange a refresh token for a new pair",
    responses=ERRORS,
)
async def refresh_token(
    context: Context, token: Annotated[str | None, Depends(bearer_auth)]
) -> JSONResponse:
    """Send the refresh token as `Authorization: Bearer`. It works once: a replay is 401."""
    if token is None:
        raise Unauthorized("Unauthorized")
    return _answer(await _service(context).refresh(token))


@router.delete(
    "/auth/token/{jti:token_id}",
    status_code=204,
    summary="Revoke a token",
    responses=ERRORS,
)
async def revoke_token(jti: TokenId, context: Context, principal: CurrentPrincipal) -> Response:
    """Revoke one of your tokens and the refresh token issued with it; 204 even when no
    such token is yours. Takes effect at once."""
    await _service(context).revoke(principal.user_id, jti)
    return Response(status_code=204)
