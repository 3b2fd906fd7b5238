"""Since when the server's secret is the current one, so that hook URLs made under the one
before keep working for `SMSGW_HOOK_URL_GRACE_SECONDS` after a rotation.

A phone's hook URL carries a digest under the server's secret (webhooks/service.py), and the
phone keeps posts it could not deliver yet, with their URL, for up to about two days. So when
the operator rotates the secret (naming the old one in `SMSGW_JWT_PREVIOUS_SECRET`), the old
URLs stay valid for the grace period, counted from the first start under the new secret: that
moment is kept in `system_values` with a fingerprint of the secret (a keyed digest, which
tells nothing of the secret), shared by every process and node on the database.

On PostgreSQL, several nodes share one database and must share the secret too: a token
signed by one is checked by another. A node whose secret is neither the recorded one nor,
in a rotation, the recorded one's successor (it names the recorded one as its previous
secret) is refused at start (`OtherSecret`), rather than taking the database over and
leaving the other nodes refusing its tokens. On SQLite, one machine, a changed secret is the
operator's rotation, and is recorded.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.db.base import SystemValue, table_of
from smsgw.db.engine import Database
from smsgw.domain import clock

KEY = "secret.current_since"
_values = table_of(SystemValue)
#: Why a node is refused (OtherSecret).
OTHER_SIGNER = (
    "this node's JWT secret is not the one the nodes on this PostgreSQL database sign with: "
    "give every node the same SMSGW_JWT_SECRET (a rotation names the old one in "
    "SMSGW_JWT_PREVIOUS_SECRET); if no node has that secret any more, `smsgw tokens "
    "forget-secret` lets the next node to start record its own (tokens made under the old "
    "one stop working)"
)


class OtherSecret(Exception):
    """The database's nodes sign with another secret (OTHER_SIGNER)."""


def fingerprint(key: bytes) -> str:
    """A keyed digest that tells nothing of the secret, to compare secrets by."""
    return hmac.new(key, b"secret fingerprint:", hashlib.sha256).hexdigest()[:32]


async def current_since(db: Database, current: str, previous: str | None = None) -> datetime:
    """When the secret of fingerprint `current` became current: the stored moment when it is
    the stored secret, else now (recorded: the secret changed, or this is the first start).
    On PostgreSQL, OtherSecret unless the stored one is none or `previous`'s."""
    try:
        return await _current_since(db, current, previous)
    except IntegrityError:  # another process recorded it first: read what it wrote
        return await _current_since(db, current, previous)


async def forget(db: Database) -> bool:
    """Forget the recorded secret: the next start records its own. Whether one was."""
    async with db.write() as conn:
        gone = await conn.execute(delete(_values).where(_values.c.key == KEY))
    return bool(gone.rowcount)


async def _stored(conn: AsyncConnection) -> str | None:
    stored: str | None = (
        await conn.execute(select(_values.c.value).where(_values.c.key == KEY))
    ).scalar()
    return stored


def _other(db: Database, stored: str | None, current: str, previous: str | None) -> bool:
    known = (stored or "").partition(" ")[0]
    return db.shared and stored is not None and known not in (current, previous)


async def _current_since(db: Database, fingerprint: str, previous: str | None) -> datetime:
    async with db.write() as conn:
        stored = await _stored(conn)
        known, _, moment = (stored or "").partition(" ")
        if stored is not None and known == fingerprint:
            return datetime.fromisoformat(moment)
        if _other(db, stored, fingerprint, previous):
            raise OtherSecret(OTHER_SIGNER)
        now = clock.now()
        value = f"{fingerprint} {now.isoformat()}"
        if stored is None:
            await conn.execute(insert(_values).values(key=KEY, value=value))
        else:
            await conn.execute(update(_values).where(_values.c.key == KEY).values(value=value))
        return now
