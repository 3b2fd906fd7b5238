"""`python -m bench.smpp.units`: what a link's units of work cost a message, without a
carrier, a server or a network.

bench/smpp runs everything on the machine it measures, whose share of its host's cores
moves by about two times within minutes (docs/performance.md, "The host's speed, gauged"):
a change worth a few percent does not show through that. This runs only the database work
a link does for each message, as the links' process does it (links/service.py: `claim`,
`unsent`, `intend`, `settle` of the carrier's answers, then of its receipts), one unit after
the other on a fresh SQLite database in the temp dir: `--messages` sent first (not
measured), then claimed 40 at a time, intents committed 5 parts at a time, answers settled
10 at a time, receipts 16 at a time.

It prints the CPU time a message (all threads of this process), which moves with the host
as everything does, and with `--callgrind` (valgrind must be installed) the instructions a
message, counted by valgrind's callgrind over the measured loop only: the same code gives
the same count to about 0.2%, however fast the host runs, so two versions compare in one
run each (`PYTHONPATH=<worktree>/src:. python -m bench.smpp.units --callgrind`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import make_url

from smsgw.accounts import service as accounts
from smsgw.config import load_settings
from smsgw.db import migrate
from smsgw.db.engine import database_for
from smsgw.links import receipts
from smsgw.links import service as links
from smsgw.links.schemas import SmppSettings
from smsgw.messages import service as messages
from smsgw.messages.service import SendCommand

#: Set (to anything) in the child that valgrind runs: it turns the count on and off.
UNDER_CALLGRIND = "BENCH_UNITS_CALLGRIND"
RECEIPT = "id:{} sub:001 dlvrd:001 submit date:2612011200 done date:2612011200 stat:DELIVRD err:000"


def _callgrind(on: bool) -> None:
    if os.environ.get(UNDER_CALLGRIND):
        switch = ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())]
        subprocess.run(switch, capture_output=True, check=True)


async def cycle(data: Path, count: int, sql: list[str]) -> tuple[float, int]:
    """Send `count` messages, then run the link's units over them: (CPU seconds, parts
    submitted). `sql`: statements run on the new database first (what-ifs: a trigger or an
    index dropped)."""
    settings = load_settings(data_dir=data, bootstrap_account=False)
    migrate.upgrade(settings)
    if sql:
        conn = sqlite3.connect(str(make_url(migrate.sync_url(settings)).database))
        try:
            for statement in sql:
                conn.execute(statement)
            conn.commit()
        finally:
            conn.close()
    db = database_for(settings)
    try:
        await accounts.create_user(db, "bench", "correct horse battery")
        config = SmppSettings(host="127.0.0.1", port=9, system_id="bench", password="bench")
        await links.add(db, 1, "bench", None, config)
        [link] = await links.of_user(db, 1)
        await links.lease(db, "bench", 3600)  # (an intent requires the link's lease)

        def command(n: int) -> SendCommand:
            return SendCommand(["+12025550100"], text=f"message number {n} for you")

        await asyncio.gather(*(messages.send(db, None, 1, command(n)) for n in range(count)))
        waiting: list[receipts.Receipt] = []
        done = 0
        _callgrind(True)
        started = time.process_time()
        while done < count:
            claimed = await links.claim(db, link, 40)
            jobs = await links.unsent(db, link, 100)
            for at in range(0, len(jobs), 5):
                await links.intend(db, link, "bench", [job.id for job in jobs[at : at + 5]])
            for at in range(0, len(jobs), 10):
                chunk = jobs[at : at + 10]
                answers = [(job.id, "accepted", f"C{job.id}", None) for job in chunk]
                await links.settle(db, link, answers, [])
                waiting += [
                    receipts.parse(RECEIPT.format(f"C{job.id}").encode(), None, None)
                    for job in chunk
                ]
                if len(waiting) >= 16:
                    await links.settle(db, link, [], waiting[:16])
                    waiting = waiting[16:]
            done += len(jobs)
            if not jobs and not claimed.claimed:
                break
        if waiting:
            await links.settle(db, link, [], waiting)
        spent = time.process_time() - started
        _callgrind(False)
        return spent, done
    finally:
        await db.dispose()


def measure(count: int, sql: list[str] | None = None) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="bench-units-") as scratch:
        return asyncio.run(cycle(Path(scratch), count, sql or []))


def counted(count: int, sql: list[str] | None = None) -> int:
    """Run this module under callgrind, counting the loop only: its instructions."""
    command = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null",
        sys.executable, "-m", "bench.smpp.units", "--messages", str(count),
        *(f"--sql={statement}" for statement in sql or []),
    ]  # fmt: skip
    env = os.environ | {UNDER_CALLGRIND: "1"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = re.search(r"Collected\s*:\s*([\d,]+)", run.stderr)
    if run.returncode != 0 or found is None:
        raise SystemExit(f"callgrind failed ({run.returncode}):\n{run.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.smpp.units", description=__doc__)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--callgrind", action="store_true", help="count instructions too")
    parser.add_argument(
        "--sql", action="append", default=[], metavar="STATEMENT",
        help="run on the new database before anything else (repeatable): a what-if",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.messages < 1:
        parser.error("--messages: at least 1")
    spent, done = measure(args.messages, args.sql)
    if done != args.messages:
        print(f"only {done} of {args.messages} parts were submitted", file=sys.stderr)
        return 1
    print(f"{args.messages} messages: {spent * 1000 / done:.3f} ms of CPU a message")
    if args.callgrind:
        instructions = counted(args.messages, args.sql)
        print(
            f"{args.messages} messages: {instructions / args.messages:,.0f} instructions a message"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
