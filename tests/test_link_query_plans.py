"""A link's hot path reads by the indexes that keep it flat as history grows: every
statement of a claim, an intent, the carrier's answers and its receipts (links/service.py),
as SQLite plans it, reads no table whole and no index range of all the link's parts.

A claim once asked which of its messages had parts already with `device_id = ? AND
message_id IN (...)`; SQLite, without statistics, read that through the (device_id,
outcome, id) index: every part the link ever had, on every claim (60,000 rows a claim after
three rounds of bench/smpp)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from smsgw.accounts import service as accounts
from smsgw.config import load_settings
from smsgw.db import migrate
from smsgw.db.engine import SQLiteUnit, database_for
from smsgw.links import receipts
from smsgw.links import service as links
from smsgw.links.schemas import SmppSettings
from smsgw.messages import service as messages
from smsgw.messages.service import SendCommand

pytestmark = pytest.mark.one_engine("SQLite's query plans")  # conftest.py

#: What a plan must not do: read a table whole, or the link's parts by the link alone.
ALL_PARTS = "ix_link_parts_device_id_outcome_id (device_id=?)"


def run_a_link(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[Any]]:
    """Queue messages and take them through a link as its runner does (claim, parts read,
    intent, answers, receipts), recording each statement of the units of work."""
    seen: list[tuple[str, tuple[Any, ...]]] = []
    execute, executemany = SQLiteUnit.execute, SQLiteUnit.executemany

    async def recorded_execute(self: SQLiteUnit, sql: str, params: Iterable[Any] = ()) -> Any:
        params = tuple(params)
        seen.append((sql, params))
        return await execute(self, sql, params)

    async def recorded_executemany(
        self: SQLiteUnit, sql: str, rows: Iterable[Iterable[Any]]
    ) -> None:
        rows = [tuple(row) for row in rows]
        if rows:
            seen.append((sql, rows[0]))
        await executemany(self, sql, rows)

    settings = load_settings(data_dir=data_dir, bootstrap_account=False)
    migrate.upgrade(settings)

    async def run() -> None:
        db = database_for(settings)
        try:
            await accounts.create_user(db, "alice", "correct horse battery")
            config = SmppSettings(host="127.0.0.1", port=9, system_id="x", password="y")
            await links.add(db, 1, "alice", None, config)
            link = (await links.of_user(db, 1))[0]
            await links.lease(db, "me", 3600)  # (an intent requires the link's lease)
            for n in range(40):  # (sent before the recording: the API's statements)
                await messages.send(db, None, 1, SendCommand(["+12025550100"], text=f"m{n}"))
            monkeypatch.setattr(SQLiteUnit, "execute", recorded_execute)
            monkeypatch.setattr(SQLiteUnit, "executemany", recorded_executemany)
            for _ in range(2):  # the second claim finds parts of the link already
                await links.claim(db, link, 20)
                jobs = await links.unsent(db, link, 100)
                await links.intend(db, link, "me", [job.id for job in jobs])
                answers = [(job.id, "accepted", f"C{job.id}", None) for job in jobs]
                await links.settle(db, link, answers, [])
                text = "id:C{} sub:001 dlvrd:001 submit date:2612011200 stat:DELIVRD err:000"
                found = [receipts.parse(text.format(job.id).encode(), None, None) for job in jobs]
                settled = await links.settle(db, link, [], [r for r in found if r is not None])
                assert len(found) == len(jobs) == 20 and not settled.unmatched
        finally:
            await db.dispose()

    asyncio.run(run())
    return data_dir / "smsgw.db", seen


def test_no_statement_of_a_links_cycle_reads_a_table_or_the_links_parts_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, seen = run_a_link(tmp_path, monkeypatch)
    bad = []
    with sqlite3.connect(path) as conn:
        states = conn.execute("SELECT state, count(*) FROM messages GROUP BY state").fetchall()
        assert states == [("Delivered", 40)]  # (the cycle ran, every step of it)
        for sql, params in {sql: params for sql, params in seen}.items():
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            for line in plan:
                whole = line.startswith("SCAN ") and not line.startswith(
                    ("SCAN CONSTANT", "SCAN pinned")
                )
                if whole or ALL_PARTS in line:
                    bad.append(f"{line}: {sql}")
    assert bad == []
