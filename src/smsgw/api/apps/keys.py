"""Named API key routes: create a key (shown once), list your keys, revoke one.

The router guard (deps.authorize) has already checked `tokens:manage`, the scope that issues
and revokes JWTs (api/scopes.py); as for JWTs, a caller grants a new key only scopes it holds
itself (Basic credentials hold all). So a key holding `tokens:manage` may create keys, with
at most its own scopes, as a JWT holding it may issue JWTs (docs/auth.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from fastapi.responses import JSONResponse

from smsgw.api.deps import Context, CurrentPrincipal, CurrentUser
from smsgw.apikeys import service as keys
from smsgw.apikeys.schemas import CreatedKey, KeyInfo, KeyRequest, key_info
from smsgw.domain import clock
from smsgw.domain.errors import Forbidden
from smsgw.messages.schemas import ErrorBody
from smsgw.tokens import scopes

router = APIRouter(tags=["Auth"])
KeyId = Annotated[
    str, Path(min_length=1, max_length=64, description="The key's id, as the list shows it.")
]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


@router.post(
    "/auth/keys",
    status_code=201,
    response_model=CreatedKey,
    summary="Create a named API key",
    responses={
        400: _error("Unknown scope, bad name or an expiry not in the future."),
        403: _error("The credentials lack `tokens:manage` or a scope asked for."),
        409: _error("You have a key of that name, or too many keys."),
    },
)
async def create_key(body: KeyRequest, context: Context, principal: CurrentPrincipal) -> Response:
    """A long-lived key for one application, used as `Authorization: Bearer <key>` in place
    of a JWT. The key is in this answer only: it is stored hashed and never shown again.
    Grant only scopes you hold yourself (Basic credentials hold all)."""
    wanted = scopes.check_requested(body.scopes)
    for scope in wanted:
        if not scopes.grants(principal.scopes, scope):
            raise Forbidden(f"scope required: {scope}")
    made = await keys.create(context.db, principal.user_id, body.name, wanted, body.expiresAt)
    info = key_info(made.row, clock.now())
    answer = CreatedKey(**info.model_dump(), key=made.key)
    return JSONResponse(answer.model_dump(mode="json"), status_code=201)


@router.get("/auth/keys", response_model=list[KeyInfo], summary="List your API keys")
async def list_keys(context: Context, user_id: CurrentUser) -> Response:
    """Your keys, newest first, revoked and expired ones too; never a key itself."""
    now = clock.now()
    rows = await keys.list_for_user(context.db, user_id)
    return JSONResponse([key_info(row, now).model_dump(mode="json") for row in rows])


@router.delete(
    "/auth/keys/{id}",
    status_code=204,
    summary="Revoke an API key",
    responses={404: _error("You have no key of that id.")},
)
async def revoke_key(context: Context, user_id: CurrentUser, id: KeyId) -> Response:
    """Revoke one of your keys: it is refused (401) from the next request on, in every
    server process. Revoking a revoked key changes nothing (204)."""
    await keys.revoke(context.db, user_id, id)
    return Response(status_code=204)
