"""The indexes of messages: a new message is written to five of them, and every query on
messages still finds its rows through an index (plans of the SQL the repositories issue)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import CreateIndex

from smsgw import metrics
from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.base import table_of
from smsgw.db.engine import Database, SQLiteUnit, UnitConnection
from smsgw.events.hub import EventHub
from smsgw.messages import repository as stored
from smsgw.messages.models import Message
from smsgw.routing import repository as routing
from smsgw.routing.budgets import Limits
from tests.conftest import create_account

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PHONE = routing.Phone("phone1", 1, None)

#: A pull's claim reads the owner's queue in its order, from the index of that order.
QUEUE_OF_OWNER = "SEARCH messages USING INDEX ix_messages_claimable_lifo (user_id=?)"

Query = Callable[[AsyncConnection], Awaitable[object]]
UnitQuery = Callable[[UnitConnection], Awaitable[object]]

# Each call of the phones' hot paths (plain DB-API connection), with the plan of each
# statement it issues on messages, in order.
UNIT_QUERIES: dict[str, tuple[UnitQuery, list[str]]] = {
    "held": (
        lambda c: routing.held(c, PHONE, True, NOW),
        ["SEARCH messages USING INDEX ix_messages_device_id_state (device_id=? AND state=?)"],
    ),
    "released_from": (
        lambda c: routing.released_from(c, PHONE),
        [
            "SEARCH messages USING INDEX ix_messages_released_from_user_id"
            " (released_from=? AND user_id=?)"
        ],
    ),
    "claim": (
        lambda c: routing.claim(c, PHONE, 10, NOW, True),
        # One UPDATE: the chosen keys, found in the queue's index, then each row by its key.
        ["SEARCH messages USING INTEGER PRIMARY KEY (rowid=?)", QUEUE_OF_OWNER],
    ),
    "has_claimable": (
        lambda c: routing.has_claimable(c, PHONE, NOW),
        [QUEUE_OF_OWNER],
    ),
    "has_claimable within a budget": (
        lambda c: routing.has_claimable(c, PHONE, NOW, Limits(30, 0)),
        [QUEUE_OF_OWNER],
    ),
    "queued_due": (
        lambda c: routing.queued_due(c, 1, 30, NOW),
        ["SEARCH messages USING INDEX ix_messages_claimable_lifo (user_id=?)"],
    ),
    "has_due_untaken": (
        lambda c: routing.has_due_untaken(c, "phone1", NOW),
        ["SEARCH messages USING INDEX ix_messages_untaken (device_id=?)"],
    ),
    "page": (
        lambda c: stored.page(c, 1, stored.ListFilter()),
        [
            "SEARCH messages USING INDEX ix_messages_user_id_created_at (user_id=?)",
        ],
    ),
    "page by state": (
        lambda c: stored.page(c, 1, stored.ListFilter(state="Pending")),
        [
            "SEARCH messages USING INDEX ix_messages_state_user_id_created_at"
            " (state=? AND user_id=?)",
        ],
    ),
    "page by phone": (
        lambda c: stored.page(c, 1, stored.ListFilter(device_id="phone1")),
        [
            "SEARCH messages USING INDEX ix_messages_user_id_device_id_created_at"
            " (user_id=? AND device_id=?)",
        ],
    ),
    "page since": (
        lambda c: stored.page(c, 1, stored.ListFilter(since=NOW, newest_first=False)),
        [
            "SEARCH messages USING COVERING INDEX ix_messages_user_id_created_at"
            " (user_id=? AND created_at>?)",
            "SEARCH messages USING INDEX ix_messages_user_id_created_at"
            " (user_id=? AND created_at>?)",
        ],
    ),
    "read_by_ext_id": (
        lambda c: stored.read_by_ext_id(c, 1, "x"),
        ["SEARCH messages USING INDEX sqlite_autoindex_messages_1 (user_id=? AND ext_id=?)"],
    ),
    "pull_state": (
        lambda c: routing.pull_state(c, "phone1", NOW),
        [
            "SEARCH messages USING COVERING INDEX ix_messages_device_id_state"
            " (device_id=? AND state=?)",
            "SEARCH messages USING INDEX ix_messages_untaken (device_id=?)",
        ],
    ),
    "claim within a budget": (
        lambda c: routing.claim(c, PHONE, 10, NOW, True, room=30, first_max=30),
        ["SEARCH messages USING INTEGER PRIMARY KEY (rowid=?)", QUEUE_OF_OWNER],
    ),
}

# Each repository call, with the plan of each statement it issues on messages, in order.
QUERIES: dict[str, tuple[Query, list[str]]] = {
    "stale_claims": (
        lambda c: routing.stale_claims(c, NOW),
        ["SEARCH messages USING INDEX ix_messages_state_claimed_at (state=? AND claimed_at<?)"],
    ),
    "expired_unclaimed": (
        lambda c: routing.expired_unclaimed(c, NOW),
        ["SEARCH messages USING INDEX ix_messages_state_valid_until (state=? AND valid_until<?)"],
    ),
    "detach_device": (
        lambda c: routing.detach_device(c, "phone1", NOW),
        [
            "SEARCH messages USING COVERING INDEX ix_messages_device_id_state"
            " (device_id=? AND state=?)",
            "SEARCH messages USING INDEX ix_messages_device_id_state (device_id=? AND state=?)",
            "SEARCH messages USING INDEX ix_messages_device_id_state (device_id=? AND state=?)",
        ],
    ),
}

METRICS_PLANS = [
    # Messages per state come from the counts (test_message_counts); the claimed ones:
    # (not covering: the phone of each claim is read, to leave virtual phones' claims out)
    "SEARCH messages USING INDEX ix_messages_state_claimed_at (state=? AND claimed_at>?)",
]

# What SQLite runs on messages when a phone is deleted (ON DELETE SET NULL).
PHONE_DELETED = "UPDATE messages SET device_id = NULL WHERE device_id = ?"

ON_MESSAGES = re.compile(r"\bmessages\b")
PLAN_ON_MESSAGES = re.compile(r"(SCAN|SEARCH) messages\b")


def _path(settings: Settings) -> str:
    return make_url(settings.resolved_database_url).database or ""


def _plans(path: str, issued: list[tuple[str, Any]]) -> list[str]:
    """The plan lines on messages of each statement on messages, in the order issued."""
    lines = []
    with closing(sqlite3.connect(path)) as conn:
        for sql, parameters in issued:
            if ON_MESSAGES.search(sql):
                plan = conn.execute("EXPLAIN QUERY PLAN " + sql, parameters).fetchall()
                lines += [row[3] for row in plan if PLAN_ON_MESSAGES.match(row[3])]
    return lines


async def _issue(settings: Settings) -> dict[str, list[tuple[str, Any]]]:
    """The SQL (with its parameters) of each repository call, run on the real database."""
    db = Database(settings)
    issued: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, sql: str, parameters: Any, *rest: Any) -> None:
        issued.append((sql, parameters))

    for engine in (db.reader.sync_engine, db.writer.sync_engine):
        event.listen(engine, "before_cursor_execute", record)
    found = {}
    with closing(sqlite3.connect(_path(settings), isolation_level=None)) as raw:
        raw.set_trace_callback(lambda sql: issued.append((sql, ())))  # values expanded
        for name, (unit_query, _) in UNIT_QUERIES.items():
            issued.clear()
            raw.execute("BEGIN IMMEDIATE")
            await unit_query(SQLiteUnit(raw))
            raw.execute("ROLLBACK")
            found[name] = list(issued)
    try:
        for name, (query, _) in QUERIES.items():
            issued.clear()
            async with db.write() as conn:
                await query(conn)
            found[name] = list(issued)
        issued.clear()
        await metrics.snapshot(db, EventHub())
        found["metrics"] = list(issued)
    finally:
        await db.dispose()
    return found


@pytest.mark.sqlite_only("SQLite's query plans (EXPLAIN QUERY PLAN)")
def test_every_query_on_messages_searches_the_index_meant_for_it(settings: Settings) -> None:
    migrate.upgrade(settings)
    issued = asyncio.run(_issue(settings))
    path = _path(settings)

    plans = {name: _plans(path, statements) for name, statements in issued.items()}

    expected = {name: lines for name, (_, lines) in (UNIT_QUERIES | QUERIES).items()}
    expected["metrics"] = METRICS_PLANS
    assert plans == expected
    assert _plans(path, [(PHONE_DELETED, ("phone1",))]) == [
        # With the counts' trigger on messages, the rows' keys are read first.
        "SEARCH messages USING COVERING INDEX ix_messages_device_id_state (device_id=?)"
    ]


def _index_entries(conn: sqlite3.Connection) -> dict[str, int]:
    """How many entries each index of messages holds, counted in that very index."""
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'"
    ).fetchall()
    entries = {}
    for name, sql in indexes:
        where = sql.split(" WHERE ", 1)[1] if sql and " WHERE " in sql else "1"
        # The name and the WHERE come from the schema itself.
        count = f"SELECT count(*) FROM messages INDEXED BY {name} WHERE {where}"  # noqa: S608
        (plan,) = conn.execute("EXPLAIN QUERY PLAN " + count).fetchall()
        assert f"INDEX {name}" in plan[3]
        entries[name] = conn.execute(count).fetchone()[0]
    return entries


def _store(conn: sqlite3.Connection, ext_id: str, valid_until: datetime | None) -> None:
    values = {
        "ext_id": ext_id,
        "user_id": 1,
        "device_id": None,
        "pinned": False,
        "state": "Pending",
        "text": "hello",
        "data": None,
        "port": None,
        "is_encrypted": False,
        "sim_number": None,
        "with_delivery_report": True,
        "priority": 0,
        "valid_until": valid_until,
        "schedule_at": None,
        "created_at": NOW,
        "updated_at": NOW,
    }
    asyncio.run(stored.store_message(SQLiteUnit(conn), values, ["+12025550100"], NOW))


@pytest.mark.sqlite_only("entries counted in each of SQLite's indexes (INDEXED BY)")
def test_a_new_message_is_written_to_five_indexes_only(settings: Settings) -> None:
    migrate.upgrade(settings)
    create_account(settings, "alice", "correct horse battery")
    with closing(sqlite3.connect(_path(settings))) as conn:
        _store(conn, "first", valid_until=None)
        assert _index_entries(conn) == {
            "sqlite_autoindex_messages_1": 1,
            "ix_messages_user_id_created_at": 1,
            "ix_messages_state_user_id_created_at": 1,
            "ix_messages_user_id_device_id_created_at": 0,
            "ix_messages_device_id_state": 0,
            "ix_messages_state_claimed_at": 0,
            "ix_messages_state_valid_until": 0,
            "ix_messages_released_from_user_id": 0,
            # The queue in the orders a pull takes it (lifo, fifo); not the pinned ones.
            "ix_messages_claimable_lifo": 1,
            "ix_messages_claimable_fifo": 1,
            "ix_messages_untaken": 0,
        }

        _store(conn, "second", valid_until=NOW + timedelta(hours=1))
        assert _index_entries(conn)["ix_messages_state_valid_until"] == 1


@pytest.mark.sqlite_only(
    "SQLite's stored index SQL; PostgreSQL's indexes, WHERE included, are compared with "
    "SQLite's by test_migrations_postgresql"
)
def test_the_migrated_indexes_are_those_of_the_models_with_their_where(
    settings: Settings,
) -> None:
    # compare_metadata does not look at the WHERE of partial indexes: compare the SQL.
    migrate.upgrade(settings)
    dialect = sqlite.dialect()
    modelled = {
        str(index.name): " ".join(str(CreateIndex(index).compile(dialect=dialect)).split())
        for index in table_of(Message).indexes
    }
    with closing(sqlite3.connect(_path(settings))) as conn:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master"
            " WHERE type = 'index' AND tbl_name = 'messages' AND sql IS NOT NULL"
        ).fetchall()
    assert {name: " ".join(sql.split()) for name, sql in rows} == modelled
