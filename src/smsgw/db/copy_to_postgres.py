"""`smsgw db copy`: the rows of a SQLite installation into a new PostgreSQL database, the
way from one machine to several (issue 16).

The gateway is stopped first. The SQLite file is opened read-only and read in one read
transaction, so the copy is one moment of it. The PostgreSQL database is already at the
newest schema (the CLI runs the migrations, the same on both engines) and holds no row.
Every table of the models goes over with COPY in foreign-key order (parents first), its
values converted as SQLAlchemy would read them from SQLite and bind them for PostgreSQL,
and the message counts are counted afresh from the copied messages, all in one PostgreSQL
transaction: a copy that fails leaves the target as empty as it
found it. Before that transaction commits, each key column's sequence is moved past the
copied keys, and every table's rows are counted on both sides.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import JSON, Column, Table

from smsgw.db import migrate
from smsgw.db.engine import SQLITE, ColumnReader, ColumnWriter, unchanged
from smsgw.db.postgres import POSTGRESQL, connect_arguments, hold_node_lock
from smsgw.db.tables import Base

if TYPE_CHECKING:
    import psycopg

#: Rows read from SQLite and written to COPY at a time (and between two progress steps).
CHUNK_ROWS = 5000

Convert = Callable[[Any], Any]


class Progress(Protocol):
    """What the copy tells as it goes (a progress bar, or nothing)."""

    def start(self, rows: int) -> None:
        """The copy of `rows` rows in all begins."""

    def table(self, name: str) -> None:
        """The copy of table `name` begins."""

    def advance(self, rows: int) -> None:
        """`rows` more rows were copied."""


@dataclass(frozen=True)
class Counted:
    """A table's rows: in the SQLite file, and in PostgreSQL after the copy."""

    table: str
    source: int
    target: int


class CopyFailed(Exception):
    """Why nothing was copied, in one line; with the tables' counts when they were taken."""

    def __init__(self, message: str, counted: Sequence[Counted] = ()) -> None:
        super().__init__(message)
        self.counted = list(counted)


@dataclass
class Copied:
    """What a copy did: every table's rows, and how many key sequences were moved on."""

    counted: list[Counted] = field(default_factory=list)
    sequences: int = 0

    @property
    def rows(self) -> int:
        return sum(c.target for c in self.counted)


#: Tables that follow from the others: the message counts, which the target's triggers
#: count again as the messages go in, and are recounted at the end (`_recount`).
DERIVED = frozenset({"message_counts", "message_count_changes"})

#: The counts of the copied messages, in place of the changes the triggers recorded.
RECOUNT = (
    "DELETE FROM message_count_changes",
    "INSERT INTO message_counts (user_id, device_id, state, n) "
    "SELECT user_id, coalesce(device_id, ''), state, count(*) FROM messages "
    "GROUP BY user_id, coalesce(device_id, ''), state",
)


def tables() -> list[Table]:
    """Every table of the models that is copied, parents before the tables whose keys
    point at them (Alembic's own `alembic_version` is not among them: the migrations made
    it; nor are the DERIVED ones)."""
    return [t for t in Base.metadata.sorted_tables if t.name not in DERIVED]


def source_problem(path: Path) -> str | None:
    """Why the SQLite file at `path` cannot be copied as it is (None when it can)."""
    if not path.is_file():
        return f"no SQLite database at {path}"
    revisions = migrate.current_revisions(path)
    if revisions is None:
        return f"cannot read the SQLite database {path}"
    if revisions == set():
        return f"{path} holds no smsgw schema"
    if revisions != set(migrate.head_revisions()):
        return (
            f"the schema of {path} is not this smsgw's newest: run `smsgw db upgrade` on it "
            "first (a newer smsgw's database needs that smsgw)"
        )
    return None


def copy(path: Path, url: str, progress: Progress) -> Copied:
    """Copy every table of the SQLite file at `path` into the PostgreSQL database at `url`
    (migrated, empty); raise CopyFailed, with nothing copied, when that cannot be done."""
    import psycopg

    try:
        node = hold_node_lock(url, exclusive=True)  # no node may serve a half-copied one
        if node is None:
            raise CopyFailed("an smsgw node is serving on the target database: stop it first")
        with (
            node,
            closing(_read_only(path)) as source,
            psycopg.connect(**connect_arguments(url)) as target,  # COMMIT at the end
        ):
            return _copy_all(source, target, progress)
    except (psycopg.Error, sqlite3.Error) as exc:
        raise CopyFailed(f"the copy failed, nothing was copied: {_first_line(exc)}") from exc


def _copy_all(
    source: sqlite3.Connection, target: psycopg.Connection[Any], progress: Progress
) -> Copied:
    """Every table in the transaction `target` is in (left to the caller to commit)."""
    filled = [t.name for t in tables() if _has_rows(target, t)]
    if filled:
        raise CopyFailed(
            f"the target database already has rows (in {', '.join(filled)}): db copy fills a "
            "new, empty database only"
        )
    changes = _data_version(source)
    source.execute("BEGIN")  # one moment of the file for every table and count
    counts = {t.name: _count(source, t.name) for t in tables()}
    progress.start(sum(counts.values()))
    for table in tables():
        progress.table(table.name)
        _copy_table(source, target, table, progress)
    for statement in RECOUNT:
        target.execute(statement)
    done = Copied(
        [Counted(t.name, counts[t.name], _count(target, t.name)) for t in tables()],
        _reset_sequences(target),
    )
    source.execute("ROLLBACK")
    if _data_version(source) != changes:
        raise CopyFailed(
            "the SQLite database was written while it was copied, nothing was copied: stop "
            "the gateway (every process using the file) and run db copy again"
        )
    differ = [c.table for c in done.counted if c.source != c.target]
    if differ:
        raise CopyFailed(
            f"the rows copied differ from the source's in {', '.join(differ)}, nothing was copied",
            done.counted,
        )
    return done


def _copy_table(
    source: sqlite3.Connection, target: psycopg.Connection[Any], table: Table, progress: Progress
) -> None:
    from psycopg import sql

    names = [column.name for column in table.columns]
    converts = [_conversion(column) for column in table.columns]
    convert_row = _row_conversion(converts)
    columns = sql.SQL(", ").join(map(sql.Identifier, names))
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table.name), columns)
    rows = source.execute(f"SELECT {', '.join(names)} FROM {table.name}")  # noqa: S608
    with target.cursor() as cursor, cursor.copy(statement) as into:
        while chunk := rows.fetchmany(CHUNK_ROWS):
            for row in chunk:
                into.write_row(convert_row(row))
            progress.advance(len(chunk))


def _conversion(column: Column[Any]) -> Convert | None:
    """What a column's SQLite value becomes for PostgreSQL (None: nothing, it goes as it
    is): read as SQLAlchemy reads it from SQLite (text into a UTC datetime, 0/1 into a
    bool), then bound as SQLAlchemy binds it for PostgreSQL. A JSON column goes as it is:
    SQLite holds the document's text, which PostgreSQL's json column takes (SQL NULL stays
    NULL, JSON null stays `null`; reading and writing it again would give the same text)."""
    if isinstance(column.type, JSON):
        return None
    read = ColumnReader(column).of(SQLITE)
    write = ColumnWriter(column).of(POSTGRESQL)
    if read is unchanged and write is unchanged:
        return None
    return lambda value: write(read(value))


def _row_conversion(converts: list[Convert | None]) -> Callable[[tuple[Any, ...]], Sequence[Any]]:
    """A whole row's conversion: NULL stays NULL in every column."""
    if not any(converts):
        return lambda row: row
    return lambda row: [
        value if convert is None or value is None else convert(value)
        for convert, value in zip(converts, row, strict=True)
    ]


def _reset_sequences(target: psycopg.Connection[Any]) -> int:
    """Move every sequence of a key column (serial or identity) of the models' tables past
    the largest copied key, so the next row inserted gets a new one; how many were moved."""
    from psycopg import sql

    found = target.execute(
        "SELECT table_name, column_name, seq FROM (SELECT table_name, column_name, "
        "pg_get_serial_sequence(format('%%I.%%I', table_schema, table_name), column_name) "
        "AS seq FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = ANY(%s)) AS keyed WHERE seq IS NOT NULL",
        ([t.name for t in tables()],),
    ).fetchall()
    for table, column, sequence in found:
        largest = sql.SQL("SELECT coalesce(max({}), 0) + 1 FROM {}").format(
            sql.Identifier(column), sql.Identifier(table)
        )
        target.execute(sql.SQL("SELECT setval(%s, ({}), false)").format(largest), (sequence,))
    return len(found)


def _has_rows(target: psycopg.Connection[Any], table: Table) -> bool:
    from psycopg import sql

    query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table.name))
    row = target.execute(query).fetchone()
    return bool(row and row[0])


def _count(conn: sqlite3.Connection | psycopg.Connection[Any], table: str) -> int:
    """A table's rows (the models' table names are plain identifiers on both engines)."""
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
    return int(row[0]) if row else 0


def _read_only(path: Path) -> sqlite3.Connection:
    """The SQLite file opened read-only, with transactions left to the caller."""
    uri = path.resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)


def _data_version(conn: sqlite3.Connection) -> int:
    """SQLite's count of what other connections committed: if it moves during the copy,
    something wrote the file (a gateway still running)."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
