"""Giving back the space that deleted rows leave (SQLite); PostgreSQL's autovacuum does it
there (docs/operations.md, "Retention and disk space").

A SQLite file made by smsgw is in incremental auto-vacuum mode (`PRAGMA auto_vacuum =
INCREMENTAL`, set by `incremental_if_new` on a connection to a file that has no page yet:
on a file with tables it would have no effect, yet it writes the file's header, a commit
every other connection sees): deleted rows' pages go to the file's free list, and `PRAGMA
incremental_vacuum(N)` moves up to N of them to the end of the file and cuts them off.
The worker does that a few pages at a time after retention has deleted rows
(`Database.reclaim_space`), so no step holds the write lock long. A file made before (mode
NONE) keeps its free pages for new rows but never shrinks, until it is converted once by a
full VACUUM (`convert`): at migration time when it is small (`CONVERT_AT_MIGRATE_BYTES`),
else by `smsgw db vacuum`.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("smsgw.db")
#: SQLite's auto_vacuum modes, as `PRAGMA auto_vacuum` reads them.
NONE, FULL, INCREMENTAL = 0, 1, 2
#: Free pages one step of `Database.reclaim_space` gives back (4 KiB pages: 1 MiB), each
#: step its own short write transaction.
VACUUM_STEP_PAGES = 256
#: A file in mode NONE at most this big is converted when a migration runs (a VACUUM
#: rewrites the whole file: about a second for this much); a bigger one by `smsgw db vacuum`.
CONVERT_AT_MIGRATE_BYTES = 64 * 1024 * 1024


def incremental_if_new(conn: sqlite3.Connection) -> None:
    """Put a new, empty file in incremental auto-vacuum mode, before anything writes it;
    leave a file that has pages as it is (setting the mode there would write its header)."""
    if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")


@dataclass(frozen=True)
class FileSpace:
    """What a SQLite file holds: pages in all, free pages among them, and the page size."""

    mode: int
    page_count: int
    freelist_count: int
    page_size: int

    @property
    def bytes(self) -> int:
        return self.page_count * self.page_size


def space_of(conn: sqlite3.Connection) -> FileSpace:
    """The file's auto_vacuum mode and page counts, read on `conn`."""

    def pragma(name: str) -> int:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])

    return FileSpace(
        pragma("auto_vacuum"), pragma("page_count"), pragma("freelist_count"), pragma("page_size")
    )


def vacuum_step(conn: sqlite3.Connection, pages: int) -> int:
    """Give back up to `pages` free pages, in a transaction of its own (the connection must
    have none open); how many went. Nothing to do, or a file not in incremental mode: 0."""
    before = space_of(conn)
    if before.mode != INCREMENTAL or before.freelist_count == 0:
        return 0
    # executescript steps the pragma to its end: execute() would free a single page.
    conn.executescript(f"PRAGMA incremental_vacuum({int(pages)})")
    return before.freelist_count - int(conn.execute("PRAGMA freelist_count").fetchone()[0])


def convert(path: Path, busy_timeout_ms: int = 10_000) -> tuple[FileSpace, FileSpace]:
    """Put the file in incremental auto-vacuum mode and give back every free page: one full
    VACUUM, which rewrites the file (it needs that much free disk space for a moment, and
    holds the write lock throughout: other writers wait). The space before and after."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        before = space_of(conn)
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("VACUUM")
        return before, space_of(conn)
    finally:
        conn.close()


def mode_of(path: Path) -> int | None:
    """The file's auto_vacuum mode; None when there is no such file or it cannot be read."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        return int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def convert_if_small(path: Path) -> bool:
    """`convert` a file in mode NONE if it is at most CONVERT_AT_MIGRATE_BYTES (the
    migration's part; a file in mode FULL gives space back at every commit already);
    whether it did."""
    if mode_of(path) != NONE or path.stat().st_size > CONVERT_AT_MIGRATE_BYTES:
        return False
    try:
        convert(path)
    except sqlite3.Error as exc:  # busy (another process writing), or no room: later
        log.warning("could not convert %s to incremental auto-vacuum (%s)", path, exc)
        return False
    log.info("converted %s to incremental auto-vacuum", path)
    return True
