"""Jasmin 0.11.0, the anchor of bench/smpp (issue 19, requirement 6): the same load through
Jasmin's HTTP API to the same simulator, in the same run.

What runs (bench/jasmin.py, in a scratch directory of the run): Redis, RabbitMQ and
`jasmind.py` of a venv holding `jasmin==0.11.0` (`--jasmin VENV`); through jCli, a user, an
SMPP client connector bound to the simulator with the link's throughput, and a default
route to it. Then `messages` sent with
`GET /send` (`dlr-level=2`: Jasmin calls a local sink back with each receipt) by
`concurrency` clients, the simulator's count read as for smsgw, and the CPU of jasmind,
RabbitMQ and Redis counted.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.common import free_port, machine_busy_seconds
from bench.jasmin import PASSWORD, USER, Jasmin
from bench.smpp.load import SECRET, SYSTEM_ID, Sampler, Simulator, wait_bind

NUMBER = "12025550100"


@dataclass
class JasminPhase:
    """One load through Jasmin, measured as bench/smpp measures smsgw's link phase."""

    messages: int
    accepted: int
    accepted_per_s: float
    submits_during_load_per_s: float
    ratio: float
    submits_per_s: float | None = None
    drain_ms: float | None = None
    backlog_at_last_accept: int | None = None
    #: jasmind, RabbitMQ and Redis together; jasmind alone.
    cpu_ms_per_message: float | None = None
    jasmind_cpu_ms_per_message: float | None = None
    machine_busy_percent: float | None = None
    receipts_called_back: int = 0
    problems: list[str] = field(default_factory=list)


async def receipts_sink(port: int, seen: list[int]) -> web.AppRunner:
    """An aiohttp app on 127.0.0.1:`port` counting Jasmin's receipt callbacks in `seen[0]`."""

    async def sink(_: web.Request) -> web.Response:
        seen[0] += 1
        return web.Response(text="ACK/Jasmin")

    app = web.Application()
    app.router.add_route("*", "/dlr", sink)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def send_all(
    http: str, sink: str, count: int, concurrency: int
) -> tuple[float, float, int, list[str]]:
    """`count` GET /send; (first start, last end, accepted, refusals)."""
    todo = iter(range(count))
    accepted, refusals = 0, []
    first = last = time.monotonic()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def worker() -> None:
            nonlocal accepted, last
            for n in todo:
                params = {"username": USER, "password": PASSWORD, "to": NUMBER,
                          "content": f"jasmin {n}", "dlr": "yes", "dlr-level": "2",
                          "dlr-method": "GET", "dlr-url": sink}  # fmt: skip
                async with client.get(http + "/send", params=params) as answer:
                    body = await answer.text()
                last = max(last, time.monotonic())
                if answer.status == 200 and body.startswith("Success"):
                    accepted += 1
                else:
                    refusals.append(f"{answer.status} {body[:80]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return first, last, accepted, refusals


async def run_jasmin(
    venv: Path, scratch: Path, sim: Simulator, messages: int, concurrency: int,
    throughput: int, within: float,
) -> JasminPhase:  # fmt: skip
    """Start Jasmin, bind it to `sim` (nothing else bound), send `messages`, measure, stop."""
    jasmin = Jasmin(venv, scratch)
    seen = [0]
    sink_port = free_port()
    try:
        print("bench.smpp: Jasmin 0.11.0 (Redis, RabbitMQ, jasmind) starting ...", flush=True)
        jasmin.start()
        async with aiohttp.ClientSession() as session:
            binds_before = (await sim.get(session, "/binds"))["ok"]
        jasmin.provision(sim.port, SYSTEM_ID, SECRET, throughput)
        await wait_bind(sim, binds_before, "Jasmin's connector")
        runner = await receipts_sink(sink_port, seen)
        try:
            print(f"bench.smpp: Jasmin, {messages} messages ...", flush=True)
            return await _measure(jasmin, sim, messages, concurrency, within, sink_port, seen)
        finally:
            await runner.cleanup()
    finally:
        jasmin.stop()


async def _measure(
    jasmin: Jasmin, sim: Simulator, messages: int, concurrency: int, within: float,
    sink_port: int, seen: list[int],
) -> JasminPhase:  # fmt: skip
    http = f"http://127.0.0.1:{jasmin.port['http']}"
    sink = f"http://127.0.0.1:{sink_port}/dlr"
    async with aiohttp.ClientSession() as session:
        sampler = Sampler(sim, session)
        start = await sampler.count()
        cpu_before, busy_before = jasmin.cpu_seconds(), machine_busy_seconds()
        began = time.monotonic()
        sampling = asyncio.ensure_future(sampler.until(start + messages, within))
        first, last, accepted, refusals = await send_all(http, sink, messages, concurrency)
        if accepted < messages:
            sampling.cancel()
            sampling = asyncio.ensure_future(sampler.until(start + accepted, within))
        done = await sampling
        cpu_after, busy_after = jasmin.cpu_seconds(), machine_busy_seconds()
        wall = time.monotonic() - began
    phase = JasminPhase(
        messages, accepted, round(accepted / (last - first), 1),
        round((sampler.at(last) - sampler.at(first)) / (last - first), 1), 0.0,
        backlog_at_last_accept=start + accepted - sampler.at(last),
    )  # fmt: skip
    phase.ratio = round(phase.submits_during_load_per_s / max(phase.accepted_per_s, 1e-9), 3)
    if accepted:
        phase.cpu_ms_per_message = round((cpu_after[0] - cpu_before[0]) * 1000 / accepted, 3)
        phase.jasmind_cpu_ms_per_message = round(
            (cpu_after[1] - cpu_before[1]) * 1000 / accepted, 3
        )
    if busy_before is not None and busy_after is not None:
        cores = os.cpu_count() or 1
        phase.machine_busy_percent = round((busy_after - busy_before) * 100 / (cores * wall), 1)
    if refusals:
        phase.problems.append(f"Jasmin refused {len(refusals)} sends, e.g. {refusals[0]}")
    if done is None:
        phase.problems.append(f"Jasmin: not every submit_sm reached the simulator in {within} s")
    else:
        phase.submits_per_s = round(accepted / (done - first), 1)
        phase.drain_ms = round(max(0.0, done - last) * 1000, 1)
    deadline = time.monotonic() + 60
    while seen[0] < accepted and time.monotonic() < deadline:  # noqa: ASYNC110 (a count)
        await asyncio.sleep(0.1)
    phase.receipts_called_back = seen[0]
    return phase
