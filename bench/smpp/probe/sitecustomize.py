"""`bench.smpp --probe`: what a link's window waits for, in the links' process.

Put on the PYTHONPATH of `smsgw links run` (with BENCH_SMPP_PROBE naming a JSON file) by
bench/smpp, never by smsgw itself. It samples each link runner every millisecond of the
event loop while the link has work (parts planned, ready, being intended or awaiting their
answer) and sorts the time since the last sample by what the sender waits for then; and it
times the group commit's batches on the loop (thread CPU) by the units they hold. Written
to the file at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from typing import Any

OUT = os.environ.get("BENCH_SMPP_PROBE")


def _install(out: str) -> None:
    import asyncio

    from smsgw.db import engine
    from smsgw.links import runner

    states: dict[str, float] = {}
    batches: dict[str, list[float]] = {}
    runners: list[runner.LinkRunner] = []

    def state(link: runner.LinkRunner) -> str | None:
        if not (link.backlog or link.ready or link.intending or link.awaiting):
            return None  # nothing to send: not counted
        if link.free == 0:
            return "window full (awaiting answers)"
        if link.ready:
            return "parts ready, places free (the sender's turn)"
        if link.intending:
            return "waiting for an intent's commit"
        if link.backlog:
            return "parts planned, none being intended"
        return "all sent, answers awaited: waiting for more messages (a claim)"

    async def sample() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.001)
            now = time.monotonic()
            for link in runners:  # the state found, for the time since the last sample
                if (found := state(link)) is not None:
                    states[found] = states.get(found, 0.0) + (now - last) * 1000
            last = now

    started = runner.LinkRunner.run

    async def run(self: runner.LinkRunner) -> None:
        runners.append(self)
        if len(runners) == 1:
            asyncio.get_running_loop().create_task(sample())
        await started(self)

    units = engine.Database._run_units

    async def timed(self: Any, conn: Any, works: list[Any]) -> Any:
        begun = time.thread_time()
        try:
            return await units(self, conn, works)
        finally:
            kinds = sorted({w.__qualname__.replace(".<locals>", "") for w in works})
            batches.setdefault("+".join(kinds), []).append((time.thread_time() - begun) * 1000)

    def write() -> None:
        with open(out, "w") as file:
            json.dump({"states": states, "batches_ms": batches}, file)

    runner.LinkRunner.run = run  # type: ignore[method-assign]
    engine.Database._run_units = timed  # type: ignore[method-assign]
    atexit.register(write)


if OUT:
    _install(OUT)
