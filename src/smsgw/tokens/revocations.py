"""What makes an access token invalid before it expires, kept in memory and coherent across
processes: revoked jtis, and each user's current token stamp.

Checking an access token must not cost a query on SQLite. Every revocation, password change
and account deletion bumps a generation number (`system_values`, in the same transaction).
Before each answer the cache asks the database whether anything was committed since it last
looked (`Database.data_version`: SQLite's `PRAGMA data_version`, on a connection of its own,
changes when any other connection, of this process or another sharing the file, has
committed, and reading it touches no table). Only then is the generation read, and only when
that changed is the revoked set reloaded and the known stamps forgotten. A user's stamp is
read (one lookup by primary key) the first time after that a token of theirs is checked. So
a revocation made anywhere is seen by the next request everywhere.

On PostgreSQL there is no such counter yet (LISTEN/NOTIFY will bring one, issue 16), so
every check reads the generation: one lookup by key, and the same guarantee across nodes.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from smsgw.db.engine import Database, UnitConnection
from smsgw.domain import clock
from smsgw.tokens import repository

#: Most users whose stamp is kept; past that the map starts afresh (a lookup each).
MAX_STAMPS = 100_000


class RevocationCache:
    """`accepts(jti, user_id, stamp)`, answered from memory while nothing changed.

    `stamp` turns a password hash into the stamp tokens carry (see service.py)."""

    def __init__(self, db: Database, stamp: Callable[[str], str]) -> None:
        self._db = db
        self._stamp = stamp
        self._data_version: int | None = None
        self._generation: int | None = None
        self._revoked: frozenset[str] = frozenset()
        self._stamps: dict[int, str] = {}
        #: How many times the stamps were forgotten: a stamp read across that is not kept.
        self._forgotten = 0

    async def accepts(self, jti: str, user_id: int, stamp: object) -> bool:
        """Whether an access token (`jti`, of `user_id`, carrying `stamp`) is still good:
        not revoked, and its stamp is its user's current one (the user exists)."""
        await self._follow_changes()
        if jti in self._revoked or not isinstance(stamp, str):
            return False
        expected = await self._stamp_of(user_id)
        return expected is not None and hmac.compare_digest(expected.encode(), stamp.encode())

    async def epoch(self) -> int:
        """A number that changes whenever the generation did (a revocation, a password
        change or an account deletion, anywhere), brought up to date first: other caches
        of credentials (apikeys/service.py) tag what they keep with it, and read again
        what was kept under an older one."""
        await self._follow_changes()
        return self._forgotten

    async def _stamp_of(self, user_id: int) -> str | None:
        """The user's current stamp; a missing user is not remembered, because SQLite may
        give a new account the same id (without a generation change)."""
        known = self._stamps.get(user_id)
        if known is not None:
            return known
        forgotten = self._forgotten
        stored = await self._db.read_unit(lambda c: repository.password_hash(c, user_id))
        if stored is None:
            return None
        stamp = self._stamp(stored)
        if forgotten == self._forgotten:  # no reload since the read: still current
            if len(self._stamps) >= MAX_STAMPS:
                self._stamps.clear()
            self._stamps[user_id] = stamp
        return stamp

    async def _follow_changes(self) -> None:
        """Bring the revoked set up to the generation this check reads. Checks may load at
        once (on PostgreSQL a read really waits): a load is kept only when it is newer
        than what is kept (generations only grow), so a slow, older one never replaces a
        newer set; and the set a check then uses is at least as new as the one it read."""
        version = self._db.data_version()
        if version is not None and version == self._data_version:
            return
        known = self._generation

        async def load(conn: UnitConnection) -> tuple[int, frozenset[str] | None]:
            generation = await repository.generation(conn)
            if generation == known:
                return generation, None
            return generation, frozenset(await repository.revoked_access(conn, clock.now()))

        generation, revoked = await self._db.read_unit(load)
        if self._generation is not None and generation < self._generation:
            return  # another check kept a newer set meanwhile
        if revoked is not None and generation != self._generation:
            self._revoked, self._stamps = revoked, {}
            self._forgotten += 1
        self._data_version, self._generation = version, generation
