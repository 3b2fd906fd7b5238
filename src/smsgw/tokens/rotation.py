"""Since when the server's secret is the current one, so that hook URLs made under the one
before keep working for `SMSGW_HOOK_URL_GRACE_SECONDS` after a rotation.

A phone's hook URL carries a digest under the server's secret (webhooks/service.py), and the
phone keeps posts it could not deliver yet, with their URL, for up to about two days. So when
the operator rotates the secret (naming the old one in `SMSGW_JWT_PREVIOUS_SECRET`), the old
URLs stay valid for the grace period, counted from the first start under the new secret: that
moment is kept in `system_values` with a fingerprint of the secret (a keyed digest, which
tells nothing of the secret), shared by every process and node on the database.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from smsgw.db.base import SystemValue, table_of
from smsgw.db.engine import Database
from smsgw.domain import clock

KEY = "secret.current_since"
_values = table_of(SystemValue)


async def current_since(db: Database, fingerprint: str) -> datetime:
    """When the secret of `fingerprint` became current: the stored moment when it is the
    stored secret, else now (recorded: the secret changed, or this is the first start)."""
    try:
        return await _current_since(db, fingerprint)
    except IntegrityError:  # another process recorded it first: read what it wrote
        return await _current_since(db, fingerprint)


async def _current_since(db: Database, fingerprint: str) -> datetime:
    async with db.write() as conn:
        query = select(_values.c.value).where(_values.c.key == KEY)
        stored = (await conn.execute(query)).scalar()
        known, _, moment = (stored or "").partition(" ")
        if stored is not None and known == fingerprint:
            return datetime.fromisoformat(moment)
        now = clock.now()
        value = f"{fingerprint} {now.isoformat()}"
        if stored is None:
            await conn.execute(insert(_values).values(key=KEY, value=value))
        else:
            await conn.execute(update(_values).where(_values.c.key == KEY).values(value=value))
        return now
