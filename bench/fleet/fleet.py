"""Messages through simulated phones, beside plain ingest, on one server in one run.

Three phases, one after the other on the same server process:

1. **ingest**: messages through `POST /api/3rdparty/v1/messages` for an account with no
   phone: the server's rate and CPU per *accepted* message.
2. **capacity**: phones of a second account take and deliver messages posted as fast as the
   API clients can: the delivered rate, and the server's CPU per *delivered* message (the
   phase's server CPU less the ingest CPU of its messages: pulls, reports, wakes).
3. **latency**: a steady offered load through the phones of a third account: POST to
   Delivered per message.

Delivered is when the server answered the phone's report of the message's final state (the
phones note it, `SimulatedPhone.final_reported`): no poller adds load to the server. At the
end of each phase the server is asked how many of the phase's messages it holds as
Delivered, which must be all of them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import resource
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from tests.fakes.phone import SimulatedPhone

from bench.common import machine_busy_seconds, tree_cpu_seconds
from bench.fleet.server import PASSWORD, Server
from bench.profile import Recording

MOBILE = "/api/mobile/v1"
MESSAGES = "/api/3rdparty/v1/messages"
BODY_NUMBER = "+12025550100"


@dataclass
class Usage:
    """CPU of the server (all its processes) and of this process over a phase."""

    wall: float
    server_cpu: float | None
    client_cpu: float
    other_cpu_percent: float | None


@dataclass
class IngestResult:
    messages: int
    msg_per_s: float
    post_p50_ms: float
    post_p99_ms: float
    server_cpu_ms_per_message: float | None


@dataclass
class DeliveryResult:
    """One phase through phones: `offered_per_s` None means as fast as the clients post."""

    phase: str
    phones: int
    messages: int
    offered_per_s: float | None
    ingest_msg_per_s: float
    delivered: int
    delivered_msg_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    sent_total: int
    duplicates: int
    missing: int
    phones_that_sent: int
    pulls_per_message: float
    reports_per_message: float
    server_cpu_percent: float | None
    server_cpu_ms_per_message: float | None
    server_delivery_cpu_ms_per_message: float | None
    client_cpu_percent: float
    other_cpu_percent: float | None
    seconds: float
    problems: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def api_client(server: Server, login: str, connections: int) -> aiohttp.ClientSession:
    """An API client of `login` (Basic auth): aiohttp, whose CPU per request is a twentieth
    of httpx's (this process, phones included, is the busiest of the run)."""
    return aiohttp.ClientSession(
        base_url=server.base_url,
        auth=aiohttp.BasicAuth(login, PASSWORD),
        timeout=aiohttp.ClientTimeout(total=None, connect=30, sock_read=30),  # httpx's 30
        connector=aiohttp.TCPConnector(limit=connections),
        json_serialize=functools.partial(json.dumps, separators=(",", ":")),  # as httpx
    )


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """Measures a phase: wall time, the server's CPU, this process's CPU, the rest."""

    def __init__(self, server: Server, also: Sequence[int] = ()) -> None:
        """`also`: more server processes (not the server's children), counted as its own."""
        self.server, self.pids = server, [server.pid, *also]
        self.wall = time.monotonic()
        self.server_cpu = self.cpu()
        self.client_cpu = self_cpu()
        self.busy = machine_busy_seconds()

    def cpu(self) -> float | None:
        seconds = [tree_cpu_seconds(pid) for pid in self.pids]
        return None if None in seconds else sum(s for s in seconds if s is not None)

    def stop(self) -> Usage:
        wall = time.monotonic() - self.wall
        server_after = self.cpu()
        client = self_cpu() - self.client_cpu
        busy_after = machine_busy_seconds()
        server = None
        if self.server_cpu is not None and server_after is not None:
            server = server_after - self.server_cpu
        other = None
        if server is not None and self.busy is not None and busy_after is not None:
            foreign = (busy_after - self.busy) - server - client
            other = round(max(foreign, 0) * 100 / ((os.cpu_count() or 1) * wall), 1)
        return Usage(wall, server, client, other)


async def post_all(
    client: aiohttp.ClientSession,
    count: int,
    concurrency: int,
    started: dict[str, float],
    device_id: str | None = None,
    rate: float | None = None,
) -> tuple[float, float, list[float]]:
    """POST `count` messages with `concurrency` workers, at `rate` a second in all (None: as
    fast as they go); returns (first start, last end, round trips in ms). With `device_id`,
    the messages are pinned to that phone."""
    todo = iter(range(count))
    rtts: list[float] = []
    first = time.monotonic()
    last = first

    async def worker() -> None:
        nonlocal last
        for number in todo:
            if rate is not None:  # message n leaves at first + n / rate
                await asyncio.sleep(max(0.0, first + number / rate - time.monotonic()))
            body: dict[str, Any] = {
                "phoneNumbers": [BODY_NUMBER],
                "textMessage": {"text": f"fleet {number}"},
            }
            if device_id is not None:
                body["deviceId"] = device_id
            before = time.monotonic()
            async with client.post(MESSAGES, json=body) as answer:
                content = await answer.read()
            after = time.monotonic()
            if answer.status != 200:
                text = content.decode(errors="replace")
                raise RuntimeError(f"POST /messages answered {answer.status}: {text}")
            started[json.loads(content)["id"]] = before
            rtts.append((after - before) * 1000)
            last = max(last, after)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return first, last, rtts


async def run_ingest(server: Server, messages: int, concurrency: int) -> IngestResult:
    """Phase 1: plain ingest for the account "ingest", which has no phone."""
    async with api_client(server, "ingest", concurrency) as client:
        await post_all(client, concurrency * 4, concurrency, {})  # warm-up (auth cache)
        meter = Meter(server)
        first, last, rtts = await post_all(client, messages, concurrency, {})
        usage = meter.stop()
    cpu = None if usage.server_cpu is None else usage.server_cpu * 1000 / messages
    return IngestResult(
        messages=messages,
        msg_per_s=round(messages / (last - first), 1),
        post_p50_ms=round(percentile(rtts, 50), 2),
        post_p99_ms=round(percentile(rtts, 99), 2),
        server_cpu_ms_per_message=None if cpu is None else round(cpu, 3),
    )


async def delivered_count(client: aiohttp.ClientSession) -> int:
    query = {"state": "Delivered", "limit": "1"}
    async with client.get(MESSAGES, params=query, raise_for_status=True) as answer:
        return int(answer.headers["X-Total-Count"])


async def run_delivery(
    server: Server,
    phase: str,
    login: str,
    phones: int,
    messages: int,
    concurrency: int,
    rate: float | None,
    ingest: IngestResult,
    deliver_within: float,
    profile: Path | None = None,
) -> DeliveryResult:
    """Phases 2 and 3: `phones` simulated phones of `login` deliver `messages`; with
    `profile`, py-spy records the server meanwhile into that file (bench/profile.py)."""
    problems: list[str] = []
    async with api_client(server, login, concurrency + 2) as client:
        fleet = [
            SimulatedPhone(
                server.base_url + MOBILE,
                login=(login, PASSWORD),
                name=f"{phase}-{i}",
                send_delay=0.0,  # the phone's own per-step delays: none (the radio is instant)
                report_jitter=0.005,
                time_scale=0.02,
            )
            for i in range(phones)
        ]
        gate = asyncio.Semaphore(10)

        async def start(phone: SimulatedPhone) -> None:
            async with gate:
                await phone.start()

        await asyncio.gather(*(start(p) for p in fleet))
        deadline = time.monotonic() + 60
        while not all(p.sse_opens for p in fleet):
            if time.monotonic() > deadline:
                raise RuntimeError("not every phone opened its event stream within 60 s")
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # the start-up pulls and settings syncs are over

        started: dict[str, float] = {}
        pulls_before = sum(p.pulls for p in fleet)
        reports_before = sum(p.reports_sent for p in fleet)
        recording = None if profile is None else Recording(server.pid, profile)
        meter = Meter(server)
        t0, last_post, _ = await post_all(client, messages, concurrency, started, rate=rate)

        def finished() -> dict[str, float]:
            done: dict[str, float] = {}
            for phone in fleet:
                done.update(phone.final_reported)
            return done

        end = time.monotonic() + deliver_within
        while time.monotonic() < end:
            if len(finished().keys() & started.keys()) >= messages:
                break
            await asyncio.sleep(0.05)
        usage = meter.stop()
        pulls = sum(p.pulls for p in fleet) - pulls_before
        reports = sum(p.reports_sent for p in fleet) - reports_before
        if recording is not None:
            recording.stop()
        seen = finished()
        if len(seen.keys() & started.keys()) < messages:
            problems.append(
                f"{phase}: only {len(seen.keys() & started.keys())} of {messages} delivered "
                f"in {deliver_within} s"
            )
        await asyncio.sleep(0.5)  # late duplicate sends, if any, would show up now
        await asyncio.gather(*(p.stop() for p in fleet))
        stored = await delivered_count(client)
        if stored != messages:
            problems.append(f"{phase}: the server holds {stored} Delivered, not {messages}")

    sent = [message_id for p in fleet for message_id, _ in p.sent]
    counts = Counter(sent)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    missing = len(set(started) - set(counts))
    if duplicates:
        problems.append(f"{phase}: {duplicates} message(s) sent more than once")
    if missing:
        problems.append(f"{phase}: {missing} message(s) never sent")
    if set(counts) - set(started):
        problems.append(f"{phase}: sent id(s) that were never posted")
    latencies = [(seen[i] - started[i]) * 1000 for i in started if i in seen] or [float("nan")]
    done_at = [seen[i] for i in started if i in seen]
    rate_out = len(done_at) / (max(done_at) - t0) if done_at else 0.0
    server_cpu = server_ms = delivery_ms = None
    if usage.server_cpu is not None:
        server_cpu = round(usage.server_cpu * 100 / usage.wall, 1)
        server_ms = usage.server_cpu * 1000 / messages
        if ingest.server_cpu_ms_per_message is not None:
            delivery_ms = round(server_ms - ingest.server_cpu_ms_per_message, 3)
        server_ms = round(server_ms, 3)
    return DeliveryResult(
        phase=phase,
        phones=phones,
        messages=messages,
        offered_per_s=rate,
        ingest_msg_per_s=round(messages / (last_post - t0), 1),
        delivered=len(done_at),
        delivered_msg_per_s=round(rate_out, 1),
        latency_p50_ms=round(percentile(latencies, 50), 1),
        latency_p99_ms=round(percentile(latencies, 99), 1),
        latency_max_ms=round(max(latencies), 1),
        sent_total=len(sent),
        duplicates=duplicates,
        missing=missing,
        phones_that_sent=sum(1 for p in fleet if p.sent),
        pulls_per_message=round(pulls / messages, 2),
        reports_per_message=round(reports / messages, 2),
        server_cpu_percent=server_cpu,
        server_cpu_ms_per_message=server_ms,
        server_delivery_cpu_ms_per_message=delivery_ms,
        client_cpu_percent=round(usage.client_cpu * 100 / usage.wall, 1),
        other_cpu_percent=usage.other_cpu_percent,
        seconds=round(usage.wall, 2),
        problems=problems,
    )
