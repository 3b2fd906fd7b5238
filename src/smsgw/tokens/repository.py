"""Queries on the tokens table and the revocation generation (a row of system_values)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, cast, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.accounts.repository import users
from smsgw.db.base import SystemValue, table_of
from smsgw.db.engine import ColumnReader, UnitConnection, upsert
from smsgw.tokens.models import Token

tokens = table_of(Token)
GENERATION_KEY = "tokens.generation"
system_values = table_of(SystemValue)
ACCESS = "access"
REFRESH = "refresh"
_read_time = ColumnReader(tokens.c.expires_at)


@dataclass(frozen=True)
class TokenRow:
    """An issued token as the operator sees it (never the token itself)."""

    id: str
    token_use: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


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


async def of_user(conn: AsyncConnection, user_id: int) -> list[TokenRow]:
    """The user's tokens (access and refresh), newest first."""
    columns = (tokens.c.id, tokens.c.token_use, tokens.c.scopes, tokens.c.created_at)
    query = select(*columns, tokens.c.expires_at, tokens.c.revoked_at)
    query = query.where(tokens.c.user_id == user_id)
    rows = await conn.execute(query.order_by(tokens.c.created_at.desc(), tokens.c.id))
    return [TokenRow(r[0], r[1], str(r[2]).split(), r[3], r[4], r[5]) for r in rows]


async def owner_of(conn: AsyncConnection, jti: str) -> int | None:
    row = (await conn.execute(select(tokens.c.user_id).where(tokens.c.id == jti))).first()
    return None if row is None else int(row[0])


async def scopes_of(conn: AsyncConnection, user_id: int, jti: str) -> list[str]:
    query = select(tokens.c.scopes).where(tokens.c.user_id == user_id, tokens.c.id == jti)
    row = (await conn.execute(query)).first()
    return [] if row is None else str(row[0]).split()


async def revoke_all(conn: AsyncConnection, user_id: int, now: datetime) -> int:
    """Revoke every token of the user still unrevoked; how many rows."""
    query = update(tokens).where(tokens.c.user_id == user_id, tokens.c.revoked_at.is_(None))
    return (await conn.execute(query.values(revoked_at=now))).rowcount


async def bump_generation(conn: AsyncConnection) -> None:
    """Tell every process that the set of revoked tokens changed (same transaction)."""
    query = upsert(conn, system_values).values(key=GENERATION_KEY, value="1")
    bumped = cast(cast(system_values.c.value, Integer) + 1, String)
    await conn.execute(query.on_conflict_do_update(index_elements=["key"], set_={"value": bumped}))


async def generation(conn: UnitConnection) -> int:
    query = "SELECT value FROM system_values WHERE key = ?"
    row = (await conn.execute(query, (GENERATION_KEY,))).fetchone()
    return 0 if row is None else int(row[0])


async def current_password_hash(conn: AsyncConnection, user_id: int) -> str | None:
    row = (await conn.execute(select(users.c.password_hash).where(users.c.id == user_id))).first()
    return None if row is None else str(row[0])


async def password_hash(conn: UnitConnection, user_id: int) -> str | None:
    """The user's password hash (what a token's stamp is derived from); None if deleted."""
    query = "SELECT password_hash FROM users WHERE id = ?"
    row = (await conn.execute(query, (user_id,))).fetchone()
    return None if row is None else str(row[0])


async def revoked_access(conn: UnitConnection, now: datetime) -> set[str]:
    """The jtis of revoked access tokens that have not expired yet."""
    rows = await conn.execute(
        "SELECT id, expires_at FROM tokens WHERE token_use = ? AND revoked_at IS NOT NULL",
        (ACCESS,),
    )
    return {str(jti) for jti, expires in rows if _read_time(conn, expires) > now}
