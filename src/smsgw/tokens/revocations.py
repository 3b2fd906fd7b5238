"""What makes an access token invalid before it expires, kept in memory and coherent across
processes: revoked jtis, and each user's current token stamp.

Checking an access token must not cost a query. Every revocation, password change and
account deletion bumps a generation number (`system_values`, in the same transaction).
Before each answer the cache asks SQLite's `PRAGMA data_version` on a connection of its
own: the number changes when any other connection, of this process or another sharing the
file, has committed, and reading it touches no table. Only then is the generation read, and
only when that changed is the revoked set reloaded and the known stamps forgotten. A user's
stamp is read (one lookup by primary key) the first time after that a token of theirs is
checked. So a revocation made anywhere is seen by the next request everywhere.
"""

from __future__ import annotations

import hmac
import sqlite3
from collections.abc import Callable

from smsgw.domain import clock
from smsgw.tokens import repository

#: How long a check may wait for a lock (only during crash recovery) before failing.
BUSY_TIMEOUT_S = 0.05
#: Most users whose stamp is kept; past that the map starts afresh (a lookup each).
MAX_STAMPS = 100_000


class RevocationCache:
    """`accepts(jti, user_id, stamp)`, answered from memory while nothing changed.

    `stamp` turns a password hash into the stamp tokens carry (see service.py)."""

    def __init__(self, database_path: str, stamp: Callable[[str], str]) -> None:
        self._path = database_path
        self._stamp = stamp
        self._conn: sqlite3.Connection | None = None
        self._data_version: int | None = None
        self._generation: int | None = None
        self._revoked: frozenset[str] = frozenset()
        self._stamps: dict[int, str] = {}

    def accepts(self, jti: str, user_id: int, stamp: object) -> bool:
        """Whether an access token (`jti`, of `user_id`, carrying `stamp`) is still good:
        not revoked, and its stamp is its user's current one (the user exists)."""
        self._follow_changes()
        if jti in self._revoked or not isinstance(stamp, str):
            return False
        expected = self._stamp_of(user_id)
        return expected is not None and hmac.compare_digest(expected.encode(), stamp.encode())

    def _stamp_of(self, user_id: int) -> str | None:
        """The user's current stamp; a missing user is not remembered, because SQLite may
        give a new account the same id (without a generation change)."""
        if user_id not in self._stamps:
            stamp = self._read_stamp(user_id)
            if stamp is None:
                return None
            if len(self._stamps) >= MAX_STAMPS:
                self._stamps.clear()
            self._stamps[user_id] = stamp
        return self._stamps[user_id]

    def _read_stamp(self, user_id: int) -> str | None:
        conn = self._connection()
        conn.execute("BEGIN")
        try:
            stored = repository.password_hash(conn, user_id)
        finally:
            conn.execute("ROLLBACK")
        return None if stored is None else self._stamp(stored)

    def _follow_changes(self) -> None:
        conn = self._connection()
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if version == self._data_version:
            return
        conn.execute("BEGIN")
        try:
            generation = repository.generation(conn)
            if generation != self._generation:
                self._revoked = frozenset(repository.revoked_access(conn, clock.now()))
                self._stamps = {}
        finally:
            conn.execute("ROLLBACK")
        self._data_version, self._generation = version, generation

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(
                self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
