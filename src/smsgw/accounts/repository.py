"""Queries on the users table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.accounts.models import User
from smsgw.db.base import table_of
from smsgw.db.engine import Scalar, UnitConnection

users = table_of(User)


@dataclass(frozen=True)
class UserRow:
    id: int
    login: str
    password_hash: str
    created_at: datetime


async def by_login(conn: AsyncConnection, login: str) -> UserRow | None:
    query = select(users.c.id, users.c.login, users.c.password_hash, users.c.created_at).where(
        users.c.login == login
    )
    row = (await conn.execute(query)).first()
    return None if row is None else UserRow(*row)


async def all_users(conn: AsyncConnection) -> list[UserRow]:
    query = select(users.c.id, users.c.login, users.c.password_hash, users.c.created_at)
    return [UserRow(*row) for row in await conn.execute(query.order_by(users.c.login))]


async def count(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(users))).scalar_one())


async def add(conn: AsyncConnection, login: str, password_hash: str, now: datetime) -> int:
    values = {"login": login, "password_hash": password_hash, "created_at": now, "updated_at": now}
    result = await conn.execute(insert(users).values(values).returning(users.c.id))
    return int(result.scalar_one())


async def set_password(
    conn: AsyncConnection, login: str, password_hash: str, now: datetime
) -> bool:
    query = update(users).where(users.c.login == login)
    result = await conn.execute(query.values(password_hash=password_hash, updated_at=now))
    return result.rowcount > 0


async def remove(conn: AsyncConnection, login: str) -> bool:
    result = await conn.execute(delete(users).where(users.c.login == login))
    return result.rowcount > 0


#: The links for all accounts an account holds (links/models.py; plain SQL: accounts do not
#: import links).
_LINKS_FOR_ALL = text(
    "SELECT l.device_id FROM links l JOIN devices d ON d.id = l.device_id"
    " JOIN users u ON u.id = d.user_id WHERE u.login = :login AND l.all_accounts"
)


async def links_for_all(conn: AsyncConnection, login: str) -> list[str]:
    return [row[0] for row in await conn.execute(_LINKS_FOR_ALL, {"login": login})]


async def login_by_id(conn: AsyncConnection, user_id: int) -> str | None:
    row = (await conn.execute(select(users.c.login).where(users.c.id == user_id))).first()
    return None if row is None else str(row[0])


def current_hash(login: str, user_id: int) -> Scalar:
    """The password hash of `login` if it is still account `user_id` (NULL otherwise), as
    a query of one value (db/engine.Scalar)."""
    return Scalar("SELECT password_hash FROM users WHERE login = ? AND id = ?", [login, user_id])


async def stored_credentials(conn: UnitConnection, login: str) -> tuple[int, str] | None:
    """(user id, password hash) of a login, on a plain connection (`Database.read_unit`):
    every API request asks this, and one plain query by key costs microseconds where an
    async SQLAlchemy one costs about a millisecond of CPU."""
    row = (
        await conn.execute("SELECT id, password_hash FROM users WHERE login = ?", (login,))
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))
