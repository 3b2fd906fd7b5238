"""Signing in with a login and password (Basic credentials, the dashboard's form): parsing
the header, and the throttled check (rules in docs/auth.md), for both faces."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Protocol

from smsgw.accounts import service as accounts
from smsgw.accounts.passwords import CredentialCache
from smsgw.accounts.service import Stored
from smsgw.accounts.throttle import Attempt, AuthThrottle
from smsgw.db.engine import Database
from smsgw.domain.errors import Unauthorized


class SignInContext(Protocol):
    """What a sign-in needs of the application (AppContext has it)."""

    db: Database
    credentials: CredentialCache
    auth_throttle: AuthThrottle
    #: Password checks under way, by the credential cache's digest of their pair.
    checks: dict[bytes, asyncio.Future[int]]


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


async def authenticate_basic(
    context: SignInContext, address: str, credentials: BasicCredentials
) -> int:
    """The user id for Basic credentials, throttled (rules in docs/auth.md).

    TooManyRequests while the address or the login has failed too often, for every password,
    right or wrong: even a pair verified before (the credential cache) is not looked up then,
    so a blocked login answers no guess. Unauthorized when wrong. A password that needs a
    hash is counted as a failure before the hash, and taken back when it proves right."""
    login, password = credentials.login, credentials.password
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


def recall_basic(
    context: SignInContext, address: str, credentials: BasicCredentials
) -> accounts.Recalled | None:
    """Basic credentials that verified before, taken from the credential cache with no read,
    for a caller that confirms them in its own transaction (accounts/service.confirm, and
    `authenticate_basic` when they do not hold); None when the pair has not verified.
    The throttle first, as in `authenticate_basic`: a blocked login or address is refused
    (TooManyRequests), whatever the cache holds."""
    context.auth_throttle.refuse_if_blocked(address, credentials.login)
    return accounts.recall(context.credentials, credentials.login, credentials.password)


async def _check(
    context: SignInContext, attempt: Attempt, credentials: BasicCredentials, stored: Stored
) -> int:
    """Spend the hash; the attempt stays counted as a failure unless the password is right."""
    login, password = credentials.login, credentials.password
    user_id = await accounts.verify_pair(context.credentials, login, password, stored)
    context.auth_throttle.release(attempt)
    return user_id


def _checked(context: SignInContext, key: bytes, done: asyncio.Future[int]) -> None:
    context.checks.pop(key, None)
    if not done.cancelled():
        done.exception()  # retrieved here too: every waiter may have gone
