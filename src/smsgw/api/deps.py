"""Request dependencies: the application context and the authenticated caller."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from starlette.requests import HTTPConnection

from smsgw.accounts import service as accounts
from smsgw.accounts.passwords import CredentialCache
from smsgw.accounts.service import Stored
from smsgw.api.ratelimit import Attempt, AuthThrottle, RateLimiter
from smsgw.api.scopes import PUBLIC, required_scope
from smsgw.config import Settings
from smsgw.db.engine import Database
from smsgw.devices import appversion
from smsgw.devices import service as devices
from smsgw.devices.presence import Presence
from smsgw.domain.errors import Forbidden, Unauthorized
from smsgw.events.hub import EventHub
from smsgw.tokens import scopes
from smsgw.tokens.service import Principal, TokenService


@dataclass
class AppContext:
    """Everything a request needs, built once in create_app's lifespan."""

    settings: Settings
    db: Database
    credentials: CredentialCache
    hub: EventHub = field(default_factory=EventHub)
    presence: Presence = field(default_factory=Presence)
    registrations: RateLimiter = field(default_factory=lambda: RateLimiter(10))
    #: JWT issue/verify/revoke; None (Bearer refused) only where no service was built.
    tokens: TokenService | None = None
    auth_throttle: AuthThrottle = field(default_factory=lambda: AuthThrottle(30, 10, 300))
    #: Password checks under way, by the credential cache's digest of their pair.
    checks: dict[bytes, asyncio.Future[int]] = field(default_factory=dict)


def context_of(connection: HTTPConnection) -> AppContext:
    context: AppContext = connection.app.state.context
    return context


async def get_context(request: Request) -> AppContext:
    """Async on purpose: a plain function would cost every request a thread-pool hop."""
    return context_of(request)


Context = Annotated[AppContext, Depends(get_context)]


@dataclass(frozen=True)
class BasicCredentials:
    login: str
    password: str


def parse_basic(header: str) -> BasicCredentials | None:
    """`Authorization: Basic` credentials (UTF-8, scheme word case-insensitive); None when the
    header is another scheme or absent, Unauthorized when it is Basic but malformed."""
    scheme, _, param = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:  # a header is read as Latin-1: it may hold any byte, and b64decode wants ASCII
        decoded = base64.b64decode(param.strip().encode("latin-1"), validate=True).decode()
    except (ValueError, UnicodeError):  # binascii.Error is a ValueError
        raise Unauthorized("Unauthorized: malformed Basic credentials") from None
    login, separator, password = decoded.partition(":")
    if not separator:
        raise Unauthorized("Unauthorized: malformed Basic credentials")
    return BasicCredentials(login, password)


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
    """The user id for Basic credentials, throttled (rules in docs/auth.md).

    TooManyRequests while the address or the login has failed too often, for every password,
    right or wrong: even a pair verified before (the credential cache) is not looked up then,
    so a blocked login answers no guess. Unauthorized when wrong. A password that needs a
    hash is counted as a failure before the hash, and taken back when it proves right."""
    address, login, password = client_address(connection), credentials.login, credentials.password
    throttle = context.auth_throttle
    throttle.refuse_if_blocked(address, login)
    stored = await accounts.stored_credentials(context.db, login)
    known = accounts.known_pair(context.credentials, login, password, stored)
    if known is not None:
        return known
    key = context.credentials.digest(login, password)
    check = context.checks.get(key)
    if check is None:  # the same pair sent by concurrent requests is checked (and counted) once
        attempt = throttle.attempt(address, login)  # checks the block again: no await since
        check = asyncio.ensure_future(_check(context, attempt, credentials, stored))
        context.checks[key] = check
        check.add_done_callback(lambda done: _checked(context, key, done))
    return await asyncio.shield(check)  # a caller that goes away does not cancel the others'


async def _check(
    context: AppContext, attempt: Attempt, credentials: BasicCredentials, stored: Stored
) -> int:
    """Spend the hash; the attempt stays counted as a failure unless the password is right."""
    login, password = credentials.login, credentials.password
    user_id = await accounts.verify_pair(context.credentials, login, password, stored)
    context.auth_throttle.release(attempt)
    return user_id


def _checked(context: AppContext, key: bytes, done: asyncio.Future[int]) -> None:
    context.checks.pop(key, None)
    if not done.cancelled():
        done.exception()  # retrieved here too: every waiter may have gone


async def _principal(connection: HTTPConnection, context: AppContext) -> Principal:
    """Who the request's `Authorization` names (Basic or Bearer JWT); once per request."""
    cached: Principal | None = getattr(connection.state, "principal", None)
    if cached is not None:
        return cached
    header = connection.headers.get("authorization", "")
    basic = parse_basic(header)
    token = bearer_token(connection) if basic is None else None
    if basic is not None:
        principal = Principal(await authenticate_basic(connection, context, basic), BASIC_SCOPES)
    elif token is not None and context.tokens is not None:
        principal = context.tokens.verify(token)
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
    """The caller's user id (Basic, or a Bearer JWT holding the route's scope); 401 with
    `WWW-Authenticate: Basic` when not authenticated, 403 when the scope is missing.

    OpenAPI's security schemes are written from the scope table (app.document_security),
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
    token = bearer_token(request)
    auth = await devices.authenticate(context.db, token) if token else None
    if auth is None:
        raise Unauthorized("Unauthorized")
    context.presence.mark(auth.device_id)
    version = appversion.from_user_agent(request.headers.get("user-agent"))
    if version is not None and version != auth.app_version:
        auth = await devices.note_app_version(context.db, auth, version)
    return auth


CurrentDevice = Annotated[devices.DeviceAuth, Depends(current_device)]
