"""`python -m bench.churn`: days of traffic with a 1-day retention; the database's size at
the end of each day must stay flat after the first.

In process, through the service layer (as the API's routes call it), at a simulated clock
(domain/clock.set_clock): a fresh database, an account with two phones, one that works and
one that is never heard from. Each simulated day is cut into ticks; at each tick a share of
the day's messages is accepted (`messages.send`, a tenth of them pinned to the silent phone
with a one-hour validUntil, so they expire), the working phone pulls (`routing.pull`, its
claim cap at a time) and reports each message Sent then Delivered (`routing.report`), a few
received messages are stored (`inbox.store`), the server's expiry runs (`routing.expire`),
and then retention, exactly as the worker runs it (`workers/retention.sweep`:
SMSGW_RETENTION_DAYS=1 and SMSGW_EVENT_LOG_RETENTION_DAYS=1; its deletes in batches, then,
on SQLite, the incremental vacuum). At the end of each day: the size on disk (SQLite: the
file and its WAL; PostgreSQL: pg_database_size) and the rows kept. HTTP is left out: it
would only make the run slower, the rows and the deletes are the same.

Results as JSON in bench/results/. Exit status: 0 when the run is valid (every message
accepted was delivered or expired, as counted), 1 when it is not, 2 with --strict when it is
valid but the size is not flat (a day after the first ends more than FLAT_MARGIN above the
first day's size).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, machine, results_stamp
from smsgw.accounts import service as accounts
from smsgw.config import Settings, load_settings
from smsgw.db import migrate
from smsgw.db.engine import Database, DriverUnit, database_for
from smsgw.devices import service as devices
from smsgw.domain import clock
from smsgw.domain.states import ProcessingState
from smsgw.inbox import service as inbox
from smsgw.inbox.schemas import Received
from smsgw.messages import service as messages
from smsgw.routing import service as routing
from smsgw.routing.repository import Phone
from smsgw.workers import retention

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 1, tzinfo=UTC)
#: How much a day after the first may end above the first day's size and still be "flat".
FLAT_MARGIN = 0.10
TEXT = "Your code is 123456. It expires in 10 minutes. Do not share it with anyone."
NUMBER = "+12025550100"
CAP = 100  # the phone's claim cap (SMSGW_CLAIM_CAP's default order)
SENDERS = 64  # sends in flight at once (group commit takes them together)


@dataclass
class Day:
    """What one simulated day did, and the database at its end."""

    day: int
    accepted: int = 0
    delivered: int = 0
    expired: int = 0
    received: int = 0
    deleted: dict[str, int] = field(default_factory=dict)
    file_bytes: int = 0
    wal_bytes: int = 0
    logical_bytes: int = 0
    free_pages: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.churn", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--messages", type=int, default=100_000, help="messages in all (default 100,000)"
    )
    parser.add_argument("--days", type=int, default=5, help="simulated days (default 5)")
    parser.add_argument(
        "--ticks", type=int, default=48, help="ticks a simulated day is cut into (default 48)"
    )
    parser.add_argument(
        "--expiring", type=float, default=0.1, help="share of messages that expire (0.1)"
    )
    parser.add_argument(
        "--received", type=float, default=0.1, help="received messages per message sent (0.1)"
    )
    parser.add_argument(
        "--sqlite-synchronous",
        default="NORMAL",
        choices=["FULL", "NORMAL"],
        help="SMSGW_SQLITE_SYNCHRONOUS (default NORMAL: no sync per commit; sizes are the same)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="SMSGW_DATABASE_URL, e.g. an empty PostgreSQL database (default: SQLite in a "
        "throwaway data directory)",
    )
    parser.add_argument(
        "--postgresql",
        action="store_true",
        help="run on a throwaway PostgreSQL cluster of the machine's server binaries "
        "(tests/pgcluster.py, as bench/nodes)",
    )
    parser.add_argument(
        "--vacuum-daily",
        action="store_true",
        help="PostgreSQL: a plain VACUUM at the end of each simulated day, standing for the "
        "autovacuum rounds a real day has (a simulated day lasts a minute or so)",
    )
    parser.add_argument(
        "--data-parent", type=Path, default=None, help="where to make the data directory"
    )
    parser.add_argument("--strict", action="store_true", help="exit 2 when the size grows")
    args = parser.parse_args(argv)
    if args.days < 2 or args.ticks < 1 or args.messages < args.days * args.ticks:
        parser.error("--days at least 2, --ticks at least 1, --messages at least days*ticks")
    if not 0 <= args.expiring <= 1 or args.received < 0:
        parser.error("--expiring is a share (0 to 1), --received at least 0")
    return args


def settings_for(data_dir: Path, args: argparse.Namespace) -> Settings:
    env = {k: v for k, v in os.environ.items() if k.startswith("SMSGW_")}
    for key in env:  # no inherited setting changes what is measured
        os.environ.pop(key)
    overrides: dict[str, Any] = {
        "data_dir": data_dir,
        "retention_days": 1,
        "event_log_retention_days": 1,
        "bootstrap_account": False,
        "sqlite_synchronous": args.sqlite_synchronous,
    }
    if args.database_url:
        overrides["database_url"] = args.database_url
    return load_settings(**overrides)


class Churn:
    """The simulated traffic on one database."""

    def __init__(self, settings: Settings, db: Database, args: argparse.Namespace) -> None:
        self.settings, self.db, self.args = settings, db, args
        self.now = START
        clock.set_clock(lambda: self.now)
        self.phone: Phone | None = None
        self.silent_id = ""
        self.user_id = 0
        self.serial = 0

    async def setup(self) -> None:
        await accounts.create_user(self.db, "churn", "churn-password-0123")
        self.user_id = await accounts.user_id_of(self.db, "churn")
        working = await devices.register(self.db, self.user_id, "churn", "working", None, None)
        silent = await devices.register(self.db, self.user_id, "churn", "silent", None, None)
        self.phone = Phone(working.device_id, self.user_id, None)
        self.silent_id = silent.device_id

    async def send(self, count: int, expiring: int) -> None:
        async def one(pinned: bool) -> None:
            command = messages.SendCommand(
                phone_numbers=[NUMBER],
                text=TEXT,
                device_id=self.silent_id if pinned else None,
                ttl=3600 if pinned else None,
            )
            await messages.send(self.db, None, self.user_id, command)

        kinds = [True] * expiring + [False] * (count - expiring)
        for start in range(0, len(kinds), SENDERS):
            await asyncio.gather(*(one(p) for p in kinds[start : start + SENDERS]))

    async def deliver(self) -> int:
        """The working phone pulls and reports each message Sent then Delivered, until its
        queue is empty; how many it delivered."""
        assert self.phone is not None
        delivered = 0
        while True:
            pulled = await routing.pull(self.db, self.phone, newest_first=False, cap=CAP)
            items = [p.record for p in pulled.items if p.state == ProcessingState.PENDING]
            if not items:
                return delivered
            now = clock.now()
            reports = [
                routing.StateReport(
                    record.id,
                    ProcessingState.DELIVERED,
                    [routing.RecipientReport(NUMBER, ProcessingState.DELIVERED, None)],
                    {ProcessingState.SENT: now, ProcessingState.DELIVERED: now},
                )
                for record in items
            ]
            await routing.report(self.db, self.phone, reports)
            delivered += len(items)

    async def receive(self, count: int) -> None:
        assert self.phone is not None
        async with self.db.write() as conn:
            unit = DriverUnit(conn)
            for _ in range(count):
                self.serial += 1
                item = Received(
                    "SMS", f"in{self.serial}", NUMBER, None, 1, "Thanks, received.", None, None
                )
                await inbox.store_unit(unit, self.user_id, self.phone.device_id, item)

    async def tick(self, sent: int, expiring: int, received: int, day: Day) -> None:
        await self.send(sent, expiring)
        day.accepted += sent
        day.delivered += await self.deliver()
        await self.receive(received)
        day.received += received
        day.expired += await routing.expire(self.db)
        for kind, gone in (await retention.sweep(self.db, self.settings)).items():
            day.deleted[kind] = day.deleted.get(kind, 0) + gone


def share(total: int, parts: int, index: int) -> int:
    """The `index`-th of `parts` near-equal parts of `total`."""
    return total * (index + 1) // parts - total * index // parts


async def measure(settings: Settings, db: Database, day: Day) -> None:
    """The size on disk and the rows kept, at the end of `day`."""
    tables = ("messages", "recipients", "message_states", "event_log", "inbox")
    async with db.read() as conn:
        for table in tables:
            found = await conn.exec_driver_sql(f"SELECT count(*) FROM {table}")  # noqa: S608
            day.rows[table] = int(found.scalar_one())
        pending = "SELECT count(*) FROM messages WHERE state = 'Pending'"
        day.rows["pending"] = int((await conn.exec_driver_sql(pending)).scalar_one())
        if settings.database_scheme == "postgresql":
            found = await conn.exec_driver_sql("SELECT pg_database_size(current_database())")
            day.file_bytes = day.logical_bytes = int(found.scalar_one())
            return
        pages = int((await conn.exec_driver_sql("PRAGMA page_count")).scalar_one())
        size = int((await conn.exec_driver_sql("PRAGMA page_size")).scalar_one())
        day.free_pages = int((await conn.exec_driver_sql("PRAGMA freelist_count")).scalar_one())
    path = migrate.sqlite_path(settings)
    assert path is not None
    day.logical_bytes = pages * size
    day.file_bytes = path.stat().st_size
    wal = path.with_name(path.name + "-wal")
    day.wal_bytes = wal.stat().st_size if wal.exists() else 0


def vacuum(settings: Settings) -> None:
    """A plain VACUUM of the whole database (not FULL: it locks nothing but itself)."""
    import psycopg

    from smsgw.db.postgres import connect_arguments

    arguments = connect_arguments(settings.resolved_database_url)
    with psycopg.connect(**arguments, autocommit=True) as conn:
        conn.execute("VACUUM")


async def simulate(settings: Settings, args: argparse.Namespace) -> list[Day]:
    db = database_for(settings)
    churn = Churn(settings, db, args)
    days: list[Day] = []
    try:
        await churn.setup()
        per_day = [share(args.messages, args.days, d) for d in range(args.days)]
        for number, total in enumerate(per_day, start=1):
            day, started = Day(number), time.monotonic()
            for t in range(args.ticks):
                sent = share(total, args.ticks, t)
                expiring = round(sent * args.expiring)
                received = round(sent * args.received)
                await churn.tick(sent, expiring, received, day)
                churn.now += timedelta(days=1) / args.ticks
            if args.vacuum_daily and settings.database_scheme == "postgresql":
                await asyncio.to_thread(vacuum, settings)
            await measure(settings, db, day)
            day.seconds = round(time.monotonic() - started, 1)
            days.append(day)
            print(row(day), flush=True)
    finally:
        await db.dispose()
        clock.set_clock(lambda: datetime.now(UTC))
    return days


HEADER = (
    f"{'day':>3} {'accepted':>9} {'delivered':>9} {'expired':>8} {'deleted':>9} "
    f"{'file MiB':>9} {'WAL MiB':>8} {'pages MiB':>9} {'free':>6} {'messages':>9} {'s':>6}"
)


def row(day: Day) -> str:
    mib = 1024 * 1024
    return (
        f"{day.day:>3} {day.accepted:>9} {day.delivered:>9} {day.expired:>8} "
        f"{day.deleted.get('messages', 0):>9} {day.file_bytes / mib:>9.2f} "
        f"{day.wal_bytes / mib:>8.2f} {day.logical_bytes / mib:>9.2f} {day.free_pages:>6} "
        f"{day.rows['messages']:>9} {day.seconds:>6.1f}"
    )


def verdict(days: list[Day], args: argparse.Namespace) -> tuple[list[str], float]:
    """The problems that make the run invalid, and the growth after the first day (the
    largest end-of-day size after it over the first's)."""
    problems = []
    accepted = sum(d.accepted for d in days)
    done = sum(d.delivered + d.expired for d in days)
    waiting = days[-1].rows["pending"]  # the last hour's expiring ones, not expired yet
    if accepted != done + waiting:
        problems.append(f"{accepted} accepted, {done} delivered or expired, {waiting} pending")
    if args.days > 1 and days[-1].deleted.get("messages", 0) == 0:
        problems.append("retention deleted no message on the last day")
    on_disk = [d.file_bytes + d.wal_bytes for d in days]
    growth = max(on_disk[1:]) / on_disk[0]
    return problems, growth


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cluster = None
    if args.postgresql:
        from bench.nodes import postgres

        cluster = postgres.start()
        args.database_url = cluster.create_database()
    try:
        return run(args, argv)
    finally:
        if cluster is not None:
            cluster.stop()


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    with tempfile.TemporaryDirectory(prefix="smsgw-churn-", dir=args.data_parent) as tmp:
        settings = settings_for(Path(tmp) / "data", args)
        migrate.upgrade(settings)
        engine = settings.database_scheme
        print(
            f"bench.churn: {args.messages} messages over {args.days} simulated days "
            f"({args.ticks} ticks a day), retention 1 day, {engine}",
            flush=True,
        )
        print(HEADER)
        started = time.monotonic()
        days = asyncio.run(simulate(settings, args))
        took = time.monotonic() - started
    problems, growth = verdict(days, args)
    flat = growth <= 1 + FLAT_MARGIN
    print()
    print(
        f"size after the first day: at most {growth:.2f}x the first day's "
        f"(target <= {1 + FLAT_MARGIN:.2f}x: {'flat' if flat else 'GROWING'}); {took:.0f} s"
    )
    for problem in problems:
        print(f"INVALID RUN: {problem}")
    stamp = results_stamp()
    result = {
        "benchmark": "churn",
        "when": stamp,
        "command": " ".join([".venv/bin/python -m bench.churn", *(argv or sys.argv[1:])]),
        "settings": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(args).items()
            if k != "database_url"  # it may hold a password
        }
        | {"engine": engine, "retention_days": 1, "event_log_retention_days": 1},
        "machine": machine(),
        "days": [asdict(d) for d in days],
        "growth_after_first_day": round(growth, 3),
        "flat_margin": FLAT_MARGIN,
        "flat": flat,
        "seconds": round(took, 1),
        "valid": not problems,
        "problems": problems,
    }
    out = RESULTS_DIR / f"churn-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    if problems:
        return 1
    if args.strict and not flat:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
