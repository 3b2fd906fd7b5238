"""Sign-in sessions of the dashboard and their CSRF tokens.

The cookie carries a random token; the database keeps only its SHA-256, the owner and a
CSRF token bound to the session (synchronizer pattern). Signing out deletes the row, so a
stolen cookie stops working at once. Before sign-in, the login form is protected by a
double-submit token (a random cookie repeated in the form).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, insert, select
from starlette.requests import Request
from starlette.responses import Response

from smsgw.db.base import table_of
from smsgw.db.engine import Database
from smsgw.domain import clock
from smsgw.web.models import WebSession

SESSION_COOKIE = "smsgw_session"
LOGIN_CSRF_COOKIE = "smsgw_login_csrf"
sessions = table_of(WebSession)


@dataclass(frozen=True)
class Session:
    user_id: int
    csrf_token: str
    token_hash: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def start(db: Database, user_id: int, hours: int) -> str:
    """A new session for `user_id`; returns the cookie value. Expired rows are swept here."""
    now = clock.now()
    token = secrets.token_urlsafe(32)
    values = {
        "token_hash": _hash(token),
        "user_id": user_id,
        "csrf_token": secrets.token_urlsafe(32),
        "created_at": now,
        "expires_at": now + timedelta(hours=hours),
    }
    async with db.write() as conn:
        await conn.execute(delete(sessions).where(sessions.c.expires_at < now))
        await conn.execute(insert(sessions).values(values))
    return token


async def lookup(db: Database, token: str | None) -> Session | None:
    """The live session a cookie value names, or None."""
    if not token:
        return None
    query = select(sessions.c.user_id, sessions.c.csrf_token, sessions.c.expires_at).where(
        sessions.c.token_hash == _hash(token)
    )
    async with db.read() as conn:
        row = (await conn.execute(query)).first()
    if row is None or row.expires_at <= clock.now():
        return None
    return Session(int(row.user_id), row.csrf_token, _hash(token))


async def end(db: Database, session: Session) -> None:
    async with db.write() as conn:
        await conn.execute(delete(sessions).where(sessions.c.token_hash == session.token_hash))


async def end_others(db: Database, session: Session) -> None:
    """Sign out every other session of the user (after a password change)."""
    async with db.write() as conn:
        await conn.execute(
            delete(sessions).where(
                sessions.c.user_id == session.user_id,
                sessions.c.token_hash != session.token_hash,
            )
        )


async def end_all(db: Database, user_id: int) -> int:
    """Sign out every session of the user (operator's password change or deletion, CLI);
    how many ended."""
    async with db.write() as conn:
        result = await conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
    return result.rowcount


def csrf_matches(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return secrets.compare_digest(expected.encode(), given.encode())


def is_https(request: Request) -> bool:
    """Served over https, directly or (per SMSGW_PUBLIC_URL) through a TLS proxy."""
    public = request.app.state.context.settings.public_url
    return request.url.scheme == "https" or bool(public and public.startswith("https://"))


def set_cookie(request: Request, response: Response, name: str, value: str, hours: int) -> None:
    """HttpOnly, SameSite=Lax, Secure when the page was served over https."""
    response.set_cookie(
        name,
        value,
        max_age=hours * 3600,
        httponly=True,
        samesite="lax",
        secure=is_https(request),
        path="/",
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=is_https(request))
