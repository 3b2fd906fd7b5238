"""The set of revoked access tokens, kept in memory and coherent across processes.

Checking an access token must not cost a query. Every revocation bumps a generation number
(`system_values`, in the revoking transaction). Before each answer the cache asks SQLite's
`PRAGMA data_version` on a connection of its own: the number changes when any other
connection, of this process or another sharing the file, has committed, and reading it
touches no table. Only then is the generation read, and only when that changed is the set
reloaded. So a revocation made anywhere is seen by the next request everywhere.
"""

from __future__ import annotations

import sqlite3

from smsgw.domain import clock
from smsgw.tokens import repository

#: How long a check may wait for a lock (only during crash recovery) before failing.
BUSY_TIMEOUT_S = 0.05


class RevocationCache:
    """`is_revoked(jti)` for access tokens, answered from memory while nothing changed."""

    def __init__(self, database_path: str) -> None:
        self._path = database_path
        self._conn: sqlite3.Connection | None = None
        self._data_version: int | None = None
        self._generation: int | None = None
        self._revoked: frozenset[str] = frozenset()

    def is_revoked(self, jti: str) -> bool:
        self._follow_changes()
        return jti in self._revoked

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
