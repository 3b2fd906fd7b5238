"""Request dependencies: the application context and the authenticated caller."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBasic
from starlette.requests import HTTPConnection

from smsgw.accounts import service as accounts
from smsgw.accounts.passwords import CredentialCache
from smsgw.api.ratelimit import RateLimiter
from smsgw.config import Settings
from smsgw.db.engine import Database
from smsgw.devices import service as devices
from smsgw.devices.presence import Presence
from smsgw.domain.errors import Unauthorized
from smsgw.events.hub import EventHub


@dataclass
class AppContext:
    """Everything a request needs, built once in create_app's lifespan."""

    settings: Settings
    db: Database
    credentials: CredentialCache
    hub: EventHub = field(default_factory=EventHub)
    presence: Presence = field(default_factory=Presence)
    registrations: RateLimiter = field(default_factory=lambda: RateLimiter(10))


async def get_context(request: Request) -> AppContext:
    """Async on purpose: a plain function would cost every request a thread-pool hop."""
    context: AppContext = request.app.state.context
    return context


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
    try:
        decoded = base64.b64decode(param.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("Unauthorized: malformed Basic credentials") from None
    login, separator, password = decoded.partition(":")
    if not separator:
        raise Unauthorized("Unauthorized: malformed Basic credentials")
    return BasicCredentials(login, password)


class BasicAuth(HTTPBasic):
    """The Basic scheme as a FastAPI security dependency (so OpenAPI documents it)."""

    async def __call__(self, request: HTTPConnection) -> BasicCredentials | None:  # type: ignore[override]
        return parse_basic(request.headers.get("authorization", ""))


basic_auth = BasicAuth(scheme_name="basicAuth", auto_error=False)


async def current_user(
    context: Context,
    credentials: Annotated[BasicCredentials | None, Depends(basic_auth)],
) -> int:
    """The caller's user id; 401 with `WWW-Authenticate: Basic` when not authenticated."""
    if credentials is None:
        raise Unauthorized("Unauthorized")
    return await accounts.authenticate(
        context.db, context.credentials, credentials.login, credentials.password
    )


CurrentUser = Annotated[int, Depends(current_user)]


def bearer_token(request: HTTPConnection) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def current_device(request: Request, context: Context) -> devices.DeviceAuth:
    """The phone whose token the request carries (`Bearer`); 401 otherwise. Marks it seen."""
    token = bearer_token(request)
    auth = await devices.authenticate(context.db, token) if token else None
    if auth is None:
        raise Unauthorized("Unauthorized")
    context.presence.mark(auth.device_id)
    return auth


CurrentDevice = Annotated[devices.DeviceAuth, Depends(current_device)]
