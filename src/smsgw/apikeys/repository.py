"""Queries on the api_keys table. Every query an owner's request makes names its user_id;
only the credential check finds a key by its public id alone (the key says whose it is)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.apikeys.models import ApiKey
from smsgw.db.base import table_of
from smsgw.db.engine import ColumnReader, ColumnWriter, UnitConnection

api_keys = table_of(ApiKey)
_read_time = ColumnReader(api_keys.c.last_used_at)
_write_time = ColumnWriter(api_keys.c.last_used_at)


@dataclass(frozen=True)
class KeyRow:
    """A key as its owner sees it: never its secret, nor the secret's hash."""

    public_id: str
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Credential:
    """What checking a key needs (apikeys/service.py)."""

    user_id: int
    secret_hash: str
    scopes: frozenset[str]
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


_LISTED = (
    api_keys.c.public_id,
    api_keys.c.name,
    api_keys.c.scopes,
    api_keys.c.created_at,
    api_keys.c.expires_at,
    api_keys.c.last_used_at,
    api_keys.c.revoked_at,
)


def _key_row(row: Any) -> KeyRow:
    return KeyRow(str(row[0]), str(row[1]), str(row[2]).split(), row[3], row[4], row[5], row[6])


async def add(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(api_keys).values(**values))


async def live_named(conn: AsyncConnection, user_id: int, name: str) -> bool:
    """Whether the user has a key named `name` that is not revoked."""
    query = select(api_keys.c.id).where(
        api_keys.c.user_id == user_id, api_keys.c.name == name, api_keys.c.revoked_at.is_(None)
    )
    return (await conn.execute(query.limit(1))).first() is not None


async def count_live(conn: AsyncConnection, user_id: int) -> int:
    """How many of the user's keys are not revoked (expired ones count)."""
    query = select(func.count()).where(
        api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None)
    )
    return int((await conn.execute(query)).scalar_one())


async def of_user(conn: AsyncConnection, user_id: int) -> list[KeyRow]:
    """The user's keys (revoked ones too), newest first."""
    query = select(*_LISTED).where(api_keys.c.user_id == user_id)
    rows = await conn.execute(query.order_by(api_keys.c.created_at.desc(), api_keys.c.id.desc()))
    return [_key_row(row) for row in rows]


async def one_of_user(conn: AsyncConnection, user_id: int, public_id: str) -> KeyRow | None:
    query = select(*_LISTED).where(api_keys.c.user_id == user_id, api_keys.c.public_id == public_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _key_row(row)


async def revoke(conn: AsyncConnection, user_id: int, public_id: str, now: datetime) -> int:
    """Revoke the user's key `public_id` unless it is revoked already; how many rows."""
    query = update(api_keys).where(
        api_keys.c.user_id == user_id,
        api_keys.c.public_id == public_id,
        api_keys.c.revoked_at.is_(None),
    )
    return (await conn.execute(query.values(revoked_at=now))).rowcount


async def owner_of(conn: AsyncConnection, public_id: str) -> int | None:
    query = select(api_keys.c.user_id).where(api_keys.c.public_id == public_id)
    row = (await conn.execute(query)).first()
    return None if row is None else int(row[0])


async def credential(conn: UnitConnection, public_id: str) -> Credential | None:
    """The key `public_id` as the credential check needs it (a lookup by unique key)."""
    query = (
        "SELECT user_id, secret_hash, scopes, expires_at, last_used_at, revoked_at "
        "FROM api_keys WHERE public_id = ?"
    )
    row = (await conn.execute(query, (public_id,))).fetchone()
    if row is None:
        return None
    expires, used, revoked = (None if t is None else _read_time(conn, t) for t in row[3:6])
    return Credential(
        int(row[0]), str(row[1]), frozenset(str(row[2]).split()), expires, used, revoked
    )


async def note_use(conn: UnitConnection, public_id: str, now: datetime, before: datetime) -> None:
    """Set the key's last use to `now` unless it is after `before` already (another process
    wrote it lately): at most one changed row per key per interval."""
    query = (
        "UPDATE api_keys SET last_used_at = ? "
        "WHERE public_id = ? AND (last_used_at IS NULL OR last_used_at <= ?)"
    )
    await conn.execute(query, (_write_time(conn, now), public_id, _write_time(conn, before)))
