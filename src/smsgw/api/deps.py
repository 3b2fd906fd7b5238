"""Request dependencies: the application context and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from starlette.requests import HTTPConnection

from smsgw.accounts import signin
from smsgw.accounts.service import Recalled
from smsgw.accounts.signin import BasicCredentials, parse_basic
from smsgw.api.scopes import PUBLIC, required_scope
from smsgw.apikeys import service as apikeys
from smsgw.context import AppContext, context_of
from smsgw.devices import appversion
from smsgw.devices import service as devices
from smsgw.devices.recent import RecentPhones
from smsgw.domain.errors import Forbidden, Unauthorized
from smsgw.tokens import scopes
from smsgw.tokens.service import Principal

__all__ = ["AppContext", "BasicCredentials", "context_of", "parse_basic"]


async def get_context(request: Request) -> AppContext:
    """Async on purpose: a plain function would cost every request a thread-pool hop."""
    return context_of(request)


Context = Annotated[AppContext, Depends(get_context)]


class BearerAuth(HTTPBearer):
    """The Bearer scheme (JWT) as a FastAPI security dependency, for the one route that reads
    a token outside the guard (refresh): OpenAPI documents it from this."""

    async def __call__(self, request: HTTPConnection) -> str | None:  # type: ignore[override]
        return bearer_token(request)


bearer_auth = BearerAuth(scheme_name="bearerAuth", bearerFormat="JWT", auto_error=False)
BASIC_SCOPES = frozenset({scopes.ALL})


def client_address(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client else "unknown"


async def authenticate_basic(
    connection: HTTPConnection, context: AppContext, credentials: BasicCredentials
) -> int:
    """`signin.authenticate_basic` for the client of this connection (rules in docs/auth.md)."""
    return await signin.authenticate_basic(context, client_address(connection), credentials)


async def _principal(connection: HTTPConnection, context: AppContext) -> Principal:
    """Who the request's `Authorization` names (Basic, or Bearer: a named API key, told
    by its prefix, or a JWT); once per request."""
    cached: Principal | None = getattr(connection.state, "principal", None)
    if cached is not None:
        return cached
    header = connection.headers.get("authorization", "")
    basic = parse_basic(header)
    token = bearer_token(connection) if basic is None else None
    if basic is not None:
        principal = Principal(await authenticate_basic(connection, context, basic), BASIC_SCOPES)
    elif token is not None and apikeys.is_key(token):
        if context.keys is None:
            raise Unauthorized("Unauthorized")
        principal = await context.keys.verify(token)
    elif token is not None and context.tokens is not None:
        principal = await context.tokens.verify(token)
    else:
        raise Unauthorized("Unauthorized")
    connection.state.principal = principal
    return principal


def demand(principal: Principal, scope: str) -> None:
    """Forbidden (`scope required: <scope>`) unless the principal holds `scope`."""
    if not scopes.grants(principal.scopes, scope):
        raise Forbidden(f"scope required: {scope}")


async def authorize(request: Request) -> None:
    """Guard of the whole 3rd-party router: authenticate and demand the scope the route
    needs according to the one table (api/scopes.py); public routes pass unauthenticated.

    The dependencies on this path take only the request: each sub-dependency costs every
    request FastAPI's solving (docs/performance.md)."""
    scope = required_scope(request)
    if scope != PUBLIC:
        principal = await _principal(request, context_of(request))
        demand(principal, scope)
        request.state.authorized = principal


def authorize_recalled(request: Request) -> Recalled | None:
    """`authorize` for Basic credentials that verified before, without reading the login
    (the sign-in throttle is checked first all the same): the caller confirms what this
    gives in its own transaction (accounts/service.confirm) and, when that fails, calls
    `unauthorize` then `authorize`. None (nothing authorized) for any other request."""
    basic = parse_basic(request.headers.get("authorization", ""))
    if basic is None:
        return None
    context = context_of(request)
    recalled = signin.recall_basic(context, client_address(request), basic)
    if recalled is None:
        return None
    principal = Principal(recalled.user_id, BASIC_SCOPES)
    demand(principal, required_scope(request))
    request.state.principal = request.state.authorized = principal
    return recalled


def unauthorize(request: Request) -> None:
    """Forget what `authorize_recalled` let through, for `authorize` to start afresh (which
    also drops the pair from the cache if it no longer holds: CredentialCache.is_verified)."""
    request.state.principal = request.state.authorized = None


async def _authorized(request: Request, context: AppContext) -> Principal:
    """The principal the guard let through; outside the 3rd-party API (no guard, no table)
    the caller must hold `all:any`, i.e. Basic credentials."""
    authorized: Principal | None = getattr(request.state, "authorized", None)
    if authorized is not None:
        return authorized
    principal = await _principal(request, context)
    demand(principal, scopes.ALL)
    return principal


async def current_principal(request: Request) -> Principal:
    """The authenticated caller, holding the scope the route needs; 401 / 403 otherwise."""
    return await _authorized(request, context_of(request))


async def current_user(request: Request) -> int:
    """The caller's user id (Basic, or a Bearer JWT or API key holding the route's scope);
    401 with `WWW-Authenticate: Basic` when not authenticated, 403 when the scope is missing.

    OpenAPI's security schemes are written from the scope table (api/openapi.document_security),
    not by security dependencies, which would be solved on every request."""
    return (await _authorized(request, context_of(request))).user_id


CurrentUser = Annotated[int, Depends(current_user)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def bearer_token(request: HTTPConnection) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def current_device(request: Request, context: Context) -> devices.DeviceAuth:
    """The phone whose token the request carries (`Bearer`); 401 otherwise. Marks it seen,
    and keeps the app version its User-Agent names (devices/appversion.py)."""
    return await _device(request, context, None)


async def current_phone_hot(request: Request, context: AppContext) -> devices.DeviceAuth:
    """`current_device` for the phones' pull and report fast paths: a token found valid a
    moment ago is taken without a read (devices/recent.py says what that can cost)."""
    return await _device(request, context, context.recent_phones)


async def _device(
    request: Request, context: AppContext, recent: RecentPhones | None
) -> devices.DeviceAuth:
    token = bearer_token(request)
    auth = await devices.authenticate(context.db, token, recent) if token else None
    if auth is None:
        raise Unauthorized("Unauthorized")
    context.presence.mark(auth.device_id)
    version = appversion.from_user_agent(request.headers.get("user-agent"))
    if version is not None and version != auth.app_version:
        auth = await devices.note_app_version(context.db, auth, version)
        context.recent_phones.forget(auth.device_id)
    return auth


CurrentDevice = Annotated[devices.DeviceAuth, Depends(current_device)]
