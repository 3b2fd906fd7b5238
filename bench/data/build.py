"""Filling a migrated smsgw database with many messages quickly: bulk SQL into the app's own
tables, rows as the application writes them.

The schema is the application's (`smsgw users create` migrated it and made the benchmark's
account); this module adds rows with plain `INSERT ... SELECT` statements, one series of
generated rows per table, so that whatever the schema keeps by itself (constraints, indexes,
and the triggers of a later migration that keep counts) is kept as for any other insert.

What a message looks like, as the application would have stored it:

- Pending (10%): queued, no phone (`device_id` NULL, not claimed), its recipient Pending,
  one history entry (Pending at creation);
- Delivered (80%): claimed by the account's phone a second after creation, recipient
  Delivered, history Pending, Processed, Sent, Delivered;
- Failed (7%): claimed, recipient Failed with the phone's error, history Pending,
  Processed, Failed;
- Cancelled (3%): cancelled before any phone took it, history Pending, Cancelled.

Each message has one recipient and a text of about 80 characters; ids are UUID version 7
strings made from the creation time (as `domain.ids.message_id` makes them); creation times
are one second apart, the newest an hour ago. The small accounts' messages are spread evenly
among the big account's (ids interleave as they would on a shared server), in the same
proportions. Every account has one phone (a `devices` row) that its messages went through.
"""

# The SQL here is made of this module's constants and named parameters, no outside text.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import hashlib
import random
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

#: The phone error of a Failed recipient (what the Android app reports for a SIM refusal).
PHONE_ERROR = "RESULT_ERROR_GENERIC_FAILURE"
SMALL_LOGIN = "small-{:02d}"
TEXT = "Your code is {}. It expires in 10 minutes; do not share it with anyone. Thanks."


@dataclass(frozen=True)
class Plan:
    """What to build: `messages` for the big account, `small_messages` for each of
    `small_accounts` others."""

    messages: int
    small_accounts: int = 99
    small_messages: int = 100

    @property
    def small_total(self) -> int:
        return self.small_accounts * self.small_messages

    @property
    def total(self) -> int:
        return self.messages + self.small_total

    @property
    def step(self) -> int:
        """Every `step`-th generated row is a small account's (up to `small_total` of them)."""
        return self.total // self.small_total if self.small_total else self.total + 1


@dataclass
class Built:
    """What a build made and how long it took."""

    seconds: float
    users: int
    messages: int
    recipients: int
    history: int
    big_user_id: int
    key_base: int
    by_state: dict[str, int]


class Dialect:
    """The few SQL expressions that differ between SQLite and PostgreSQL."""

    def p(self, name: str) -> str:
        """A named parameter."""
        raise NotImplementedError

    def series(self, count: str) -> str:
        raise NotImplementedError

    def timestamp(self, micros: str) -> str:
        """A stored timestamp from microseconds since the epoch (UTC)."""
        raise NotImplementedError

    def plus_seconds(self, stamp: str, seconds: int) -> str:
        raise NotImplementedError

    def hex(self, value: str, width: int) -> str:
        raise NotImplementedError

    def digits4(self, value: str) -> str:
        raise NotImplementedError

    def mod(self, a: str, b: str) -> str:
        raise NotImplementedError

    def least(self, a: str, b: str) -> str:
        raise NotImplementedError


class SQLiteDialect(Dialect):
    def p(self, name: str) -> str:
        return f":{name}"

    def series(self, count: str) -> str:
        return (
            "WITH RECURSIVE series(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM series"
            f" WHERE i < {count})"
        )

    def timestamp(self, micros: str) -> str:
        # SQLAlchemy's SQLite DATETIME: 'YYYY-MM-DD HH:MM:SS.ffffff'
        return (
            f"(strftime('%Y-%m-%d %H:%M:%S', ({micros}) / 1000000, 'unixepoch')"
            f" || printf('.%06d', ({micros}) % 1000000))"
        )

    def plus_seconds(self, stamp: str, seconds: int) -> str:
        return (
            f"(strftime('%Y-%m-%d %H:%M:%S', {stamp}, '+{seconds} seconds') || substr({stamp}, 20))"
        )

    def hex(self, value: str, width: int) -> str:
        return f"printf('%0{width}x', {value})"

    def digits4(self, value: str) -> str:
        return f"printf('%04d', {value})"

    def mod(self, a: str, b: str) -> str:
        return f"(({a}) % ({b}))"

    def least(self, a: str, b: str) -> str:
        return f"min({a}, {b})"


class PostgresDialect(Dialect):
    def p(self, name: str) -> str:
        return f"%({name})s"

    def series(self, count: str) -> str:
        return f"WITH series(i) AS (SELECT generate_series(1::bigint, ({count})::bigint))"

    def timestamp(self, micros: str) -> str:
        return f"(timestamp '1970-01-01' + ({micros}) * interval '1 microsecond')"

    def plus_seconds(self, stamp: str, seconds: int) -> str:
        return f"({stamp} + interval '{seconds} seconds')"

    def hex(self, value: str, width: int) -> str:
        return f"lpad(to_hex(({value})::bigint), {width}, '0')"

    def digits4(self, value: str) -> str:
        return f"lpad(({value})::text, 4, '0')"

    def mod(self, a: str, b: str) -> str:
        return f"mod(({a})::bigint, ({b})::bigint)"

    def least(self, a: str, b: str) -> str:
        return f"least({a}, {b})"


def _generated(d: Dialect) -> str:
    """The generated rows: i (1..total), whether a small account's, and the row's ordinal
    among its kind (which decides its state and, for a small account's, its account)."""
    step, small_total = d.p("step"), d.p("small_total")
    small = f"({d.mod('i', step)} = 0 AND i / {step} <= {small_total})"
    ordinal = (
        f"CASE WHEN {small} THEN i / {step} ELSE i - {d.least(f'i / {step}', small_total)} END"
    )
    return f"SELECT i, {small} AS small, {ordinal} AS ordinal FROM series"


def _state(d: Dialect, ordinal: str) -> str:
    r = d.mod(ordinal, "100")
    return (
        f"CASE WHEN {d.mod(r, '10')} = 0 THEN 'Pending' WHEN {r} < 8 THEN 'Failed'"
        f" WHEN {r} BETWEEN 11 AND 13 THEN 'Cancelled' ELSE 'Delivered' END"
    )


def _message_insert(d: Dialect) -> str:
    """INSERT of every message (parameters: total, step, small_total, start_seconds,
    key_base, big_user, first_small_user, small_accounts, device_prefix)."""
    p = d.p
    jitter = d.mod("i * 7919", "1000000")
    micros = f"(({p('start_seconds')} + i) * 1000000 + {jitter})"
    millis = f"({micros} / 1000)"
    # UUID version 7: 48 bits of milliseconds, version, 12 bits, variant, 62 bits
    fields = [
        d.hex(f"{millis} / 65536", 8),
        d.hex(d.mod(millis, "65536"), 4),
        "'7' || " + d.hex(d.mod("i", "4096"), 3),
        d.hex("32768 + " + d.mod("i / 4096", "16384"), 4),
        d.hex(d.mod("i * 2654435761", "281474976710656"), 12),
    ]
    ext_id = " || '-' || ".join(fields)
    final_offset = {"Delivered": 6, "Failed": 3, "Cancelled": 30}
    updated = "CASE state " + " ".join(
        f"WHEN '{s}' THEN {d.plus_seconds('created_at', n)}" for s, n in final_offset.items()
    )
    updated += " ELSE created_at END"
    went_out = "state IN ('Delivered', 'Failed')"
    claimed = f"CASE WHEN {went_out} THEN {d.plus_seconds('created_at', 1)} END"
    device = f"CASE WHEN {went_out} THEN {p('device_prefix')} || user_id END"
    text = TEXT.format(f"' || {jitter} || '")
    owner = (
        f"CASE WHEN small THEN {p('first_small_user')} + {d.mod('ordinal', p('small_accounts'))}"
        f" ELSE {p('big_user')} END"
    )
    return (
        f"{d.series(p('total'))}"
        " INSERT INTO messages (id, ext_id, user_id, device_id, pinned, claimed_at,"
        " released_from, state, text, data, port, is_encrypted, is_hashed, sim_number,"
        " with_delivery_report, priority, valid_until, schedule_at, created_at, updated_at)"
        f" SELECT {p('key_base')} + i, ext_id, user_id, {device}, FALSE, {claimed}, NULL,"
        " state, text, NULL, NULL, FALSE, FALSE, NULL, TRUE, 0, NULL, NULL, created_at,"
        f" {updated}"
        f" FROM (SELECT i, ext_id, created_at, text, {owner} AS user_id,"
        f" {_state(d, 'ordinal')} AS state"
        f" FROM (SELECT i, small, ordinal, {ext_id} AS ext_id,"
        f" {d.timestamp(micros)} AS created_at, '{text}' AS text"
        f" FROM ({_generated(d)}) AS generated) AS made) AS owned"
        " ORDER BY i"
    )


def _recipient_insert(d: Dialect) -> str:
    return (
        "INSERT INTO recipients (message_id, position, phone_number, state, error)"
        f" SELECT id, 0, '+1202555' || {d.digits4(d.mod('id', '10000'))}, state,"
        f" CASE WHEN state = 'Failed' THEN '{PHONE_ERROR}' END"
        f" FROM messages WHERE id > {d.p('key_base')} ORDER BY id"
    )


def _history_insert(d: Dialect) -> str:
    steps = (
        "SELECT 'Cancelled' AS state UNION ALL SELECT 'Delivered' UNION ALL SELECT 'Failed'"
        " UNION ALL SELECT 'Pending' UNION ALL SELECT 'Processed' UNION ALL SELECT 'Sent'"
    )
    applies = (
        "s.state = 'Pending'"
        " OR (s.state = 'Processed' AND m.state IN ('Delivered', 'Failed'))"
        " OR (s.state = 'Sent' AND m.state = 'Delivered')"
        " OR (s.state = m.state AND m.state != 'Pending')"
    )
    at = (
        "CASE s.state WHEN 'Pending' THEN m.created_at WHEN 'Processed' THEN m.claimed_at"
        f" WHEN 'Sent' THEN {d.plus_seconds('m.claimed_at', 1)} ELSE m.updated_at END"
    )
    return (
        "INSERT INTO message_states (message_id, state, at)"
        f" SELECT m.id, s.state, {at} FROM messages AS m JOIN ({steps}) AS s ON {applies}"
        f" WHERE m.id > {d.p('key_base')} ORDER BY m.id, s.state"
    )


#: The phones' ids: this and the owner's key (at most 32 characters).
DEVICE_PREFIX = "bench-archive-"


def _parameters(plan: Plan, key_base: int, big_user: int, first_small: int) -> dict[str, Any]:
    return {
        "total": plan.total,
        "step": plan.step,
        "small_total": plan.small_total,
        # one message a second, the newest an hour ago
        "start_seconds": int(time.time()) - 3600 - plan.total,
        "key_base": key_base,
        "big_user": big_user,
        "first_small_user": first_small,
        "small_accounts": max(plan.small_accounts, 1),
        "device_prefix": DEVICE_PREFIX,
    }


def _sqlite_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _pg_stamp(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


class _Run:
    """One build on one DB-API connection (sqlite3 or psycopg), in one transaction."""

    def __init__(self, conn: Any, dialect: Dialect, stamp: Any) -> None:
        self.conn = conn
        self.d = dialect
        self.stamp = stamp

    def sql(self, query: str, params: dict[str, Any] | None = None) -> Any:
        return self.conn.execute(query, params or {})

    def one(self, query: str, params: dict[str, Any] | None = None) -> Any:
        return self.sql(query, params).fetchone()[0]

    def accounts(self, plan: Plan, login: str) -> tuple[int, int]:
        """The big account's key (made by `smsgw users create`) and the first of the small
        accounts' keys (made here, consecutive)."""
        p = self.d.p
        big, password_hash = self.sql(
            f"SELECT id, password_hash FROM users WHERE login = {p('login')}", {"login": login}
        ).fetchone()
        now = self.stamp(datetime.now(UTC))
        for number in range(1, plan.small_accounts + 1):
            self.sql(
                "INSERT INTO users (login, password_hash, created_at, updated_at)"
                f" VALUES ({p('login')}, {p('hash')}, {p('now')}, {p('now')})",
                {"login": SMALL_LOGIN.format(number), "hash": password_hash, "now": now},
            )
        keys = [
            row[0]
            for row in self.sql(
                f"SELECT id FROM users WHERE login LIKE {p('pattern')} ORDER BY id",
                {"pattern": "small-%"},
            )
        ]
        if keys and keys != list(range(keys[0], keys[0] + len(keys))):
            raise RuntimeError("the small accounts' keys are not consecutive")
        for user_id in [big, *keys]:
            self.phone(user_id)
        return big, keys[0] if keys else big

    def phone(self, user_id: int) -> None:
        """The phone the account's messages went through (seen a day ago)."""
        p = self.d.p
        now = datetime.now(UTC)
        seen = self.stamp(now - timedelta(days=1))
        token = hashlib.sha256(f"bench-data-{user_id}-{time.time_ns()}".encode()).hexdigest()
        self.sql(
            "INSERT INTO devices (id, user_id, name, token_hash, created_at, updated_at,"
            f" last_seen) VALUES ({p('id')}, {p('user')}, 'archive', {p('token')},"
            f" {p('at')}, {p('at')}, {p('seen')})",
            {
                "id": f"{DEVICE_PREFIX}{user_id}",
                "user": user_id,
                "token": token,
                "at": self.stamp(now),
                "seen": seen,
            },
        )

    def messages(self, plan: Plan, big: int, first_small: int) -> int:
        """Insert every message, recipient and history entry; the key base (the largest
        message key before)."""
        key_base = int(self.one("SELECT coalesce(max(id), 0) FROM messages"))
        params = _parameters(plan, key_base, big, first_small)
        self.sql(_message_insert(self.d), params)
        self.sql(_recipient_insert(self.d), {"key_base": key_base})
        self.sql(_history_insert(self.d), {"key_base": key_base})
        return key_base

    def fold(self) -> None:
        """Fold the count changes the triggers recorded for the load into the counts, all at
        once, as the server's worker would in its first rounds (a million messages leave some
        three million changes: a count would sum them until then)."""
        self.sql(
            "INSERT INTO message_counts (user_id, device_id, state, n)"
            " SELECT user_id, device_id, state, sum(change) FROM message_count_changes"
            " WHERE true GROUP BY user_id, device_id, state"
            " ON CONFLICT (user_id, device_id, state)"
            " DO UPDATE SET n = message_counts.n + excluded.n"
        )
        self.sql("DELETE FROM message_count_changes")

    def counts(self, big: int, key_base: int) -> tuple[int, int, int, dict[str, int]]:
        p = self.d.p
        base = {"base": key_base}
        messages = self.one(f"SELECT count(*) FROM messages WHERE id > {p('base')}", base)
        recipients = self.one(
            f"SELECT count(*) FROM recipients WHERE message_id > {p('base')}", base
        )
        history = self.one(
            f"SELECT count(*) FROM message_states WHERE message_id > {p('base')}", base
        )
        by_state = dict(
            self.sql(
                f"SELECT state, count(*) FROM messages WHERE user_id = {p('user')}"
                " GROUP BY state ORDER BY state",
                {"user": big},
            ).fetchall()
        )
        return messages, recipients, history, by_state


def build_sqlite(path: Path, plan: Plan, login: str) -> Built:
    """Fill the SQLite database at `path` (migrated, with the account `login`), in one
    transaction with durability off (a throwaway build), then back in WAL mode."""
    started = time.monotonic()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in (
            "journal_mode=OFF",  # out of WAL for the build: nothing to keep if it fails
            "synchronous=OFF",
            "cache_size=-1000000",  # 1 GB
            "temp_store=MEMORY",
        ):
            conn.execute(f"PRAGMA {pragma}")
        run = _Run(conn, SQLiteDialect(), _sqlite_stamp)
        conn.execute("BEGIN")
        big, first_small = run.accounts(plan, login)
        key_base = run.messages(plan, big, first_small)
        run.fold()
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")  # as the application leaves it
        counted = run.counts(big, key_base)
    finally:
        conn.close()
    users = plan.small_accounts + 1
    seconds = round(time.monotonic() - started, 1)
    return Built(seconds, users, *counted[:3], big, key_base, counted[3])


def build_postgres(url: str, plan: Plan, login: str) -> Built:
    """Fill the PostgreSQL database at `url` (migrated, with the account `login`) in one
    transaction; then move the key sequences past the keys given, and VACUUM ANALYZE, as
    autovacuum would after such a load (it would, a little later)."""
    started = time.monotonic()
    with psycopg.connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        run = _Run(conn, PostgresDialect(), _pg_stamp)
        big, first_small = run.accounts(plan, login)
        key_base = run.messages(plan, big, first_small)
        run.fold()
        for table in ("messages", "recipients"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT max(id) FROM {table}))"
            )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
        counted = run.counts(big, key_base)
    users = plan.small_accounts + 1
    seconds = round(time.monotonic() - started, 1)
    return Built(seconds, users, *counted[:3], big, key_base, counted[3])


def sqlite_bytes(path: Path) -> int:
    """The database file and its WAL."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def postgres_bytes(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])


def sample_ext_ids(
    database: Path | str, big: int, key_base: int, plan: Plan, count: int
) -> list[str]:
    """About `count` ids of the big account's messages, spread at random over the table
    (`database`: a SQLite file, or a PostgreSQL URL)."""
    rng = random.Random(17)
    keys = [key_base + rng.randint(1, plan.total) for _ in range(count * 2)]
    marks = ", ".join(str(k) for k in keys)
    query = f"SELECT ext_id FROM messages WHERE user_id = {int(big)} AND id IN ({marks})"
    if isinstance(database, Path):
        with contextlib.closing(sqlite3.connect(database)) as conn:
            found = [row[0] for row in conn.execute(query)]
    else:
        with psycopg.connect(database) as pg:
            found = [row[0] for row in pg.execute(query)]
    rng.shuffle(found)
    return found[:count]
