"""One-time codes: a signed-in user asks for one and types it on a new phone to add it.

Codes are six digits, because the app's code field takes digits only. So they live briefly
(SMSGW_CODE_TTL_SECONDS), are stored only as hashes, are deleted when used (a code signs in
exactly one phone), and wrong guesses are throttled per address and across all addresses
(accounts/throttle.py), which keeps the odds of guessing a live code negligible (docs/auth.md).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from smsgw.accounts.models import UserCode
from smsgw.db.base import table_of
from smsgw.db.engine import Database, delete_older
from smsgw.domain import clock

LENGTH = 6
codes = table_of(UserCode)


@dataclass(frozen=True)
class IssuedCode:
    code: str
    valid_until: datetime


def _hash(code: str) -> str:
    return hashlib.sha256(code.strip().encode()).hexdigest()


def draw() -> str:
    """A uniformly random code of LENGTH digits (leading zeros kept)."""
    return str(secrets.randbelow(10**LENGTH)).zfill(LENGTH)


async def issue(db: Database, user_id: int, ttl_seconds: int) -> IssuedCode:
    """A fresh code for `user_id`, valid for `ttl_seconds`."""
    now = clock.now()
    valid_until = now + timedelta(seconds=ttl_seconds)
    for _ in range(5):
        code = draw()
        try:
            async with db.write() as conn:
                await conn.execute(delete(codes).where(codes.c.expires_at < now))
                values = {"code_hash": _hash(code), "user_id": user_id, "expires_at": valid_until}
                await conn.execute(insert(codes).values(values))
            return IssuedCode(code, valid_until)
        except IntegrityError:
            continue  # the same code is live for someone: draw again
    raise RuntimeError("could not draw a free one-time code")


async def prune_expired(db: Database) -> int:
    """Delete the codes past their expiry, in small batches (`issue` also sweeps them, but
    only when someone asks for a code); how many went."""
    return await delete_older(db, codes.c.expires_at, clock.now())


async def redeem(db: Database, code: str) -> int | None:
    """The user id a live code belongs to, deleting the code; None when unknown or expired."""
    async with db.write() as conn:
        query = select(codes.c.user_id, codes.c.expires_at).where(codes.c.code_hash == _hash(code))
        row = (await conn.execute(query)).first()
        if row is None:
            return None
        await conn.execute(delete(codes).where(codes.c.code_hash == _hash(code)))
    user_id, expires_at = row
    return int(user_id) if expires_at > clock.now() else None
