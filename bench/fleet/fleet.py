"""API to Delivered through N simulated phones, beside plain ingest with no phones."""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from tests.fakes.phone import SimulatedPhone

from bench.common import cpu_seconds, machine_busy_seconds
from bench.fleet.server import PASSWORD, Server

MOBILE = "/api/mobile/v1"
MESSAGES = "/api/3rdparty/v1/messages"
BODY_NUMBER = "+12025550100"


@dataclass
class FleetResult:
    """One fleet size: ingest baseline and API-to-Delivered, on one fresh server."""

    phones: int
    messages: int
    ingest_msg_per_s: float
    ingest_post_p50_ms: float
    ingest_post_p99_ms: float
    delivered: int
    delivered_msg_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    ratio: float
    sent_total: int
    duplicates: int
    missing: int
    per_phone_sent_min: int
    per_phone_sent_max: int
    phones_that_sent: int
    server_cpu_percent: float | None
    server_cpu_ms_per_message: float | None
    client_cpu_percent: float
    other_cpu_percent: float | None
    fleet_seconds: float
    problems: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def post_all(
    client: httpx.AsyncClient,
    count: int,
    concurrency: int,
    started: dict[str, float],
    device_id: str | None = None,
) -> tuple[float, float, list[float]]:
    """POST `count` messages with `concurrency` workers; returns (first start, last end, rtts).

    With `device_id`, the messages are pinned to that phone.
    """
    todo = iter(range(count))
    rtts: list[float] = []
    first = time.monotonic()
    last = first

    async def worker() -> None:
        nonlocal last
        for number in todo:
            body: dict[str, Any] = {
                "phoneNumbers": [BODY_NUMBER],
                "textMessage": {"text": f"fleet {number}"},
            }
            if device_id is not None:
                body["deviceId"] = device_id
            before = time.monotonic()
            answer = await client.post(MESSAGES, json=body)
            after = time.monotonic()
            if answer.status_code != 200:
                raise RuntimeError(f"POST /messages answered {answer.status_code}: {answer.text}")
            started[answer.json()["id"]] = before
            rtts.append((after - before) * 1000)
            last = max(last, after)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return first, last, rtts


async def watch_delivered(
    client: httpx.AsyncClient, expected: int, seen: dict[str, float], interval: float
) -> None:
    """Poll the Delivered list until `expected` messages are in it; note when each appeared."""
    while len(seen) < expected:
        offset = 0
        while True:
            answer = await client.get(
                MESSAGES, params={"state": "Delivered", "limit": 100, "offset": offset}
            )
            answer.raise_for_status()
            now = time.monotonic()
            page: list[dict[str, Any]] = answer.json()
            for item in page:
                seen.setdefault(item["id"], now)
            offset += len(page)
            if len(page) < 100:
                break
        if len(seen) < expected:
            await asyncio.sleep(interval)


async def run_fleet(
    server: Server,
    phones: int,
    messages: int,
    concurrency: int,
    poll_interval: float,
    deliver_within: float,
) -> FleetResult:
    owner = ("fleet", PASSWORD)
    problems: list[str] = []
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with (
        httpx.AsyncClient(
            base_url=server.base_url, auth=("ingest", PASSWORD), timeout=30, limits=limits
        ) as ingest_client,
        httpx.AsyncClient(
            base_url=server.base_url, auth=owner, timeout=30, limits=limits
        ) as client,
    ):
        # Baseline: the same number of messages through POST /messages, for an account that
        # has no phone, so nothing but the queueing happens.
        await post_all(ingest_client, concurrency, concurrency, {})  # warm-up (auth cache)
        first, last, ingest_rtts = await post_all(ingest_client, messages, concurrency, {})
        ingest_rate = messages / (last - first)

        fleet = [
            SimulatedPhone(
                server.base_url + MOBILE,
                login=owner,
                name=f"bench-{i}",
                send_delay=0.0,
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
        seen: dict[str, float] = {}
        cpu_server, cpu_client, wall = cpu_seconds(server.pid), self_cpu(), time.monotonic()
        busy = machine_busy_seconds()
        watcher = asyncio.create_task(watch_delivered(client, messages, seen, poll_interval))
        t0, _, _ = await post_all(client, messages, concurrency, started)
        try:
            await asyncio.wait_for(watcher, deliver_within)
        except TimeoutError:
            problems.append(
                f"N={phones}: only {len(seen)} of {messages} Delivered in {deliver_within} s"
            )
        wall = time.monotonic() - wall
        cpu_server_after, cpu_client = cpu_seconds(server.pid), self_cpu() - cpu_client
        busy_after = machine_busy_seconds()
        await asyncio.sleep(0.5)  # late duplicate sends, if any, would show up now
        await asyncio.gather(*(p.stop() for p in fleet))

    sent = [message_id for p in fleet for message_id, _ in p.sent]
    counts = Counter(sent)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    missing = len(set(started) - set(counts))
    strangers = len(set(counts) - set(started))
    if duplicates:
        problems.append(f"N={phones}: {duplicates} message(s) sent more than once")
    if missing:
        problems.append(f"N={phones}: {missing} message(s) never sent")
    if strangers:
        problems.append(f"N={phones}: {strangers} sent id(s) that were never posted")
    if set(seen) - set(started):
        problems.append(f"N={phones}: Delivered ids that were never posted")
    latencies = [(seen[i] - started[i]) * 1000 for i in started if i in seen]
    if not latencies:
        latencies = [float("nan")]
    rate = len(seen) / (max(seen.values()) - t0) if seen else 0.0
    per_phone = [len(p.sent) for p in fleet]
    server_cpu = server_ms = other = None
    if cpu_server is not None and cpu_server_after is not None:
        server_cpu = round((cpu_server_after - cpu_server) * 100 / wall, 1)
        server_ms = round((cpu_server_after - cpu_server) * 1000 / messages, 1)
        if busy is not None and busy_after is not None:
            # What the rest of the machine used meanwhile, in % of all its CPUs.
            foreign = (busy_after - busy) - (cpu_server_after - cpu_server) - cpu_client
            other = round(max(foreign, 0) * 100 / ((os.cpu_count() or 1) * wall), 1)
    return FleetResult(
        phones=phones,
        messages=messages,
        ingest_msg_per_s=round(ingest_rate, 1),
        ingest_post_p50_ms=round(percentile(ingest_rtts, 50), 2),
        ingest_post_p99_ms=round(percentile(ingest_rtts, 99), 2),
        delivered=len(seen),
        delivered_msg_per_s=round(rate, 1),
        latency_p50_ms=round(percentile(latencies, 50), 1),
        latency_p99_ms=round(percentile(latencies, 99), 1),
        latency_max_ms=round(max(latencies), 1),
        ratio=round(rate / ingest_rate, 3),
        sent_total=len(sent),
        duplicates=duplicates,
        missing=missing,
        per_phone_sent_min=min(per_phone),
        per_phone_sent_max=max(per_phone),
        phones_that_sent=sum(1 for n in per_phone if n),
        server_cpu_percent=server_cpu,
        server_cpu_ms_per_message=server_ms,
        client_cpu_percent=round(cpu_client * 100 / wall, 1),
        other_cpu_percent=other,
        fleet_seconds=round(wall, 2),
        problems=problems,
    )
