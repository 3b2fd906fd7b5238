"""Queries on the tokens table and the revocation generation (a row of system_values)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.base import table_of
from smsgw.db.engine import column_reader
from smsgw.tokens.models import Token

tokens = table_of(Token)
GENERATION_KEY = "tokens.generation"
ACCESS = "access"
REFRESH = "refresh"
_read_time = column_reader(tokens.c.expires_at)


@dataclass(frozen=True)
class RefreshRow:
    user_id: int
    token_hash: str
    scopes: list[str]
    expires_at: datetime


@dataclass(frozen=True)
class LiveToken:
    """An access token as its owner may see it: never the token itself."""

    id: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime


async def live_access(conn: AsyncConnection, user_id: int, now: datetime) -> list[LiveToken]:
    """The user's access tokens neither revoked nor expired, newest first."""
    query = (
        select(tokens.c.id, tokens.c.scopes, tokens.c.created_at, tokens.c.expires_at)
        .where(
            tokens.c.user_id == user_id,
            tokens.c.token_use == ACCESS,
            tokens.c.revoked_at.is_(None),
            tokens.c.expires_at > now,
        )
        .order_by(tokens.c.created_at.desc(), tokens.c.id)
    )
    rows = await conn.execute(query)
    return [LiveToken(str(r[0]), str(r[1]).split(), r[2], r[3]) for r in rows]


async def add(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(tokens), rows)


async def delete_expired(conn: AsyncConnection, user_id: int, now: datetime) -> None:
    await conn.execute(delete(tokens).where(tokens.c.user_id == user_id, tokens.c.expires_at < now))


async def unused_refresh(conn: AsyncConnection, jti: str) -> RefreshRow | None:
    """The refresh token `jti` if it exists and was neither used nor revoked."""
    query = select(tokens.c.user_id, tokens.c.token_hash, tokens.c.scopes, tokens.c.expires_at)
    query = query.where(
        tokens.c.id == jti, tokens.c.token_use == REFRESH, tokens.c.revoked_at.is_(None)
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    return RefreshRow(int(row[0]), str(row[1] or ""), str(row[2]).split(), row[3])


async def mark_used(conn: AsyncConnection, jti: str, now: datetime) -> bool:
    """Revoke a refresh token on use; False when another request used it first."""
    query = update(tokens).where(tokens.c.id == jti, tokens.c.revoked_at.is_(None))
    return (await conn.execute(query.values(revoked_at=now))).rowcount == 1


async def revoke(conn: AsyncConnection, user_id: int, jti: str, now: datetime) -> int:
    """Revoke the user's token `jti` and the refresh token issued with it; how many rows."""
    query = update(tokens).where(
        tokens.c.user_id == user_id,
        or_(tokens.c.id == jti, tokens.c.parent_jti == jti),
        tokens.c.revoked_at.is_(None),
    )
    return (await conn.execute(query.values(revoked_at=now))).rowcount


async def bump_generation(conn: AsyncConnection) -> None:
    """Tell every process that the set of revoked tokens changed (same transaction)."""
    await conn.exec_driver_sql(
        "INSERT INTO system_values (key, value) VALUES (?, '1') ON CONFLICT (key) "
        "DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
        (GENERATION_KEY,),
    )


def generation(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT value FROM system_values WHERE key = ?", (GENERATION_KEY,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def revoked_access(conn: sqlite3.Connection, now: datetime) -> set[str]:
    """The jtis of revoked access tokens that have not expired yet."""
    rows = conn.execute(
        "SELECT id, expires_at FROM tokens WHERE token_use = ? AND revoked_at IS NOT NULL",
        (ACCESS,),
    ).fetchall()
    return {str(jti) for jti, expires in rows if _read_time(expires) > now}
