"""Dashboard sign-in sessions, as stored: the cookie carries a random token; the database
keeps only its SHA-256, the owner and a CSRF token bound to the session. Signing out deletes
the row, so a stolen cookie stops working at once. A password change ends the account's
sessions in the same transaction (`end_sessions`, from `service.change_password`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.accounts.models import WebSession
from smsgw.db.base import table_of
from smsgw.db.engine import Database, delete_older
from smsgw.domain import clock

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


async def prune_expired(db: Database) -> int:
    """Delete the sessions past their expiry, in small batches (also swept by `start`, one
    user's at a time: this catches those of users who never sign in again); how many."""
    return await delete_older(db, sessions.c.expires_at, clock.now())


async def end(db: Database, session: Session) -> None:
    async with db.write() as conn:
        await conn.execute(delete(sessions).where(sessions.c.token_hash == session.token_hash))


async def end_all(db: Database, user_id: int) -> int:
    """Sign out every session of the user (operator's password change or deletion, CLI);
    how many ended."""
    async with db.write() as conn:
        result = await conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
    return result.rowcount


async def end_sessions(conn: AsyncConnection, user_id: int, keep: str | None = None) -> None:
    """Within `conn`'s transaction: end every session of the user but the one whose token
    hash is `keep` (the session that changed the password, if any)."""
    where = [sessions.c.user_id == user_id]
    if keep is not None:
        where.append(sessions.c.token_hash != keep)
    await conn.execute(delete(sessions).where(*where))
