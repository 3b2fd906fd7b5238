"""Account use cases: create, list, change password, delete, authenticate, first-start bootstrap."""

from __future__ import annotations

import asyncio
import hmac
import re
from dataclasses import dataclass

from sqlalchemy import insert, select

from smsgw.accounts import repository, sessions
from smsgw.accounts.errors import (
    BadLogin,
    LoginTaken,
    StaleCredentials,
    UnknownLogin,
    WeakPassword,
)
from smsgw.accounts.passwords import CredentialCache, hash_password, verify_password
from smsgw.accounts.repository import UserRow
from smsgw.db.base import SystemValue, table_of
from smsgw.db.engine import Database, Scalar
from smsgw.domain import clock, ids
from smsgw.domain.errors import Conflict, Unauthorized
from smsgw.tokens import service as tokens

LOGIN_PATTERN = re.compile(r"^[A-Za-z0-9._@+-]{1,64}$")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128
BOOTSTRAP_LOGIN = "admin"
_BOOTSTRAPPED = "bootstrapped"
_system_values = table_of(SystemValue)


@dataclass(frozen=True)
class NewAccount:
    login: str
    password: str


def check_login(login: str) -> None:
    if not LOGIN_PATTERN.fullmatch(login):
        raise BadLogin(f"login {login!r} is not allowed: use 1-64 letters, digits or . _ @ + -")


def check_password(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise WeakPassword(
            f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long"
        )


async def create_user(db: Database, login: str, password: str | None = None) -> NewAccount:
    """Create an account; a password is generated when none is given."""
    check_login(login)
    password = password if password is not None else ids.generated_password()
    check_password(password)
    password_hash = await asyncio.to_thread(hash_password, password)
    async with db.write() as conn:
        if await repository.by_login(conn, login) is not None:
            raise LoginTaken(login)
        await repository.add(conn, login, password_hash, clock.now())
    return NewAccount(login, password)


async def list_users(db: Database) -> list[UserRow]:
    async with db.read() as conn:
        return await repository.all_users(conn)


async def change_password(
    db: Database, login: str, password: str | None = None, keep_session: str | None = None
) -> NewAccount:
    """Set a new password (generated when none is given); old credentials stop working, and
    so do the account's JWTs (access and refresh) and its dashboard sessions, at once in every
    process: all but the session whose token hash is `keep_session` (the one that asked)."""
    password = password if password is not None else ids.generated_password()
    check_password(password)
    password_hash = await asyncio.to_thread(hash_password, password)
    async with db.write() as conn:
        user = await repository.by_login(conn, login)
        if user is None or not await repository.set_password(
            conn, login, password_hash, clock.now()
        ):
            raise UnknownLogin(login)
        await tokens.end_all(conn, user.id, "password changed")
        await sessions.end_sessions(conn, user.id, keep_session)
    return NewAccount(login, password)


async def delete_user(db: Database, login: str) -> None:
    """Delete an account with its devices, messages and tokens (refused at once everywhere).
    Conflict while it holds a link for all accounts: the link holds other accounts'
    messages, which deleting it (`smsgw links delete`) gives back to their queues."""
    async with db.write() as conn:
        held = await repository.links_for_all(conn, login)
        if held:
            raise Conflict(
                f"{login} holds the link for all accounts {held[0]}: delete the link first "
                f"(smsgw links delete {held[0]}), which gives its other accounts' messages "
                "back to their queues"
            )
        if not await repository.remove(conn, login):
            raise UnknownLogin(login)
        await tokens.user_deleted(conn)


#: A user's id and stored password hash, as read for a sign-in (None: no such login).
Stored = tuple[int, str] | None


async def stored_credentials(db: Database, login: str) -> Stored:
    return await db.read_unit(lambda conn: repository.stored_credentials(conn, login))


def known_pair(cache: CredentialCache, login: str, password: str, stored: Stored) -> int | None:
    """The user id when this exact pair verified before against the stored hash (no hash is
    spent); None when it must be checked."""
    if cache.is_verified(login, password, stored and stored[1]):
        assert stored is not None
        return stored[0]
    return None


async def verify_pair(cache: CredentialCache, login: str, password: str, stored: Stored) -> int:
    """The user id when `password` matches the stored hash (one slow hash, also for an
    unknown login), remembered in the cache; Unauthorized otherwise."""
    if not await asyncio.to_thread(verify_password, stored and stored[1], password):
        raise Unauthorized("Unauthorized")
    assert stored is not None
    cache.remember(login, password, stored[1], stored[0])
    return stored[0]


@dataclass(frozen=True)
class Recalled:
    """A Basic pair verified earlier, taken from the credential cache without a read: the
    login's id and stored hash as they were then (`confirm` checks they still are)."""

    login: str
    user_id: int
    stored_hash: str


def recall(cache: CredentialCache, login: str, password: str) -> Recalled | None:
    """The pair as it verified earlier (no read, no hash); None when it has not."""
    remembered = cache.recall(login, password)
    return None if remembered is None else Recalled(login, remembered[1], remembered[0])


def confirming(recalled: Recalled) -> Scalar:
    """The query whose value `confirm` checks: the login's stored hash now, if it is still
    the same account (a query of one value, to go with a send's inserts: no round trip of
    its own on PostgreSQL)."""
    return repository.current_hash(recalled.login, recalled.user_id)


def confirm(recalled: Recalled, current_hash: str | None) -> None:
    """StaleCredentials unless `current_hash` (the value of `confirming`, read in the
    transaction that acts on the credentials) is the one the pair verified against: the
    password not changed, nor the account deleted, since, in any process or node."""
    if current_hash is None or not hmac.compare_digest(current_hash, recalled.stored_hash):
        raise StaleCredentials(recalled.login)


async def authenticate(db: Database, cache: CredentialCache, login: str, password: str) -> int:
    """The user id for a Basic credential pair, or Unauthorized. A cached pair costs no hash.
    Not throttled: requests go through accounts/signin.authenticate_basic."""
    stored = await stored_credentials(db, login)
    known = known_pair(cache, login, password, stored)
    return known if known is not None else await verify_pair(cache, login, password, stored)


async def bootstrap(db: Database) -> NewAccount | None:
    """On the very first start with no account, create `admin` and return its credentials once."""
    async with db.read() as conn:
        marker = select(_system_values.c.value).where(_system_values.c.key == _BOOTSTRAPPED)
        if (await conn.execute(marker)).first() is not None:
            return None
    password = ids.generated_password()
    password_hash = await asyncio.to_thread(hash_password, password)
    async with db.write() as conn:
        marker = select(_system_values.c.value).where(_system_values.c.key == _BOOTSTRAPPED)
        if (await conn.execute(marker)).first() is not None:
            return None
        await conn.execute(insert(_system_values).values(key=_BOOTSTRAPPED, value="1"))
        if await repository.count(conn) > 0:
            return None
        await repository.add(conn, BOOTSTRAP_LOGIN, password_hash, clock.now())
    return NewAccount(BOOTSTRAP_LOGIN, password)


async def login_of(db: Database, user_id: int) -> str:
    """The login of an existing user id (Unauthorized if it was deleted meanwhile)."""
    async with db.read() as conn:
        login = await repository.login_by_id(conn, user_id)
    if login is None:
        raise Unauthorized("Unauthorized")
    return login


async def user_id_of(db: Database, login: str) -> int:
    async with db.read() as conn:
        user = await repository.by_login(conn, login)
    if user is None:
        raise UnknownLogin(login)
    return user.id
