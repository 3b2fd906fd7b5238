"""Request dependencies: the application context and the authenticated caller."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBasic
from starlette.requests import HTTPConnection

from smsgw.accounts import service as accounts
from smsgw.accounts.passwords import CredentialCache
from smsgw.config import Settings
from smsgw.db.engine import Database
from smsgw.domain.errors import Unauthorized


@dataclass
class AppContext:
    """Everything a request needs, built once in create_app's lifespan."""

    settings: Settings
    db: Database
    credentials: CredentialCache


def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


Context = Annotated[AppContext, Depends(get_context)]


@dataclass(frozen=True)
class BasicCredentials:
    login: str
    password: str


class BasicAuth(HTTPBasic):
    """Reads `Authorization: Basic` (UTF-8, scheme word case-insensitive); None when absent."""

    async def __call__(self, request: HTTPConnection) -> BasicCredentials | None:  # type: ignore[override]
        header = request.headers.get("authorization", "")
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
