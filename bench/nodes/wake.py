"""Wake latency across nodes: a phone's event stream open on node A, messages sent on node B,
and, as the baseline in the same run, on node A itself.

The phone is a raw client of `GET /api/mobile/v1/events` with the token its registration on
A gave (it never pulls: only the `MessageEnqueued` events are read). The messages go one at
a time, alternately through B and through A (`POST /api/3rdparty/v1/messages`, aiohttp with
keep-alive, one connection per node); each waits for its event before the next. For each:
the time from the send's answer to the event's `event:` line, and from the send's request.
A node tells the phone's stream of every new message (SharedHub on PostgreSQL); the periodic
worker, which would also wake the phone about the messages it leaves waiting, is kept quiet
by the caller (SMSGW_WORKER_INTERVAL_SECONDS)."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from bench.ingest.__main__ import BODY, INGEST_PATH, LOGIN, PASSWORD

MOBILE = "/api/mobile/v1"
#: How long a send waits for its event before it counts as missed.
EVENT_TIMEOUT_SECONDS = 5.0
#: Sends before the measured ones (first connections, caches).
WARMUP = 10


@dataclass
class Side:
    """The samples of the sends through one node, in milliseconds."""

    after_answer: list[float] = field(default_factory=list)
    after_request: list[float] = field(default_factory=list)
    missed: int = 0

    def summary(self) -> dict[str, float | int]:
        return {
            "samples": len(self.after_answer),
            "missed": self.missed,
            **_percentiles("after_answer", self.after_answer),
            **_percentiles("after_request", self.after_request),
        }


async def measure(a_url: str, b_url: str, samples: int, gap: float = 0.005) -> dict[str, Side]:
    """`samples` sends through each of B ("other node") and A ("same node")."""
    auth = aiohttp.BasicAuth(LOGIN, PASSWORD)
    async with (
        aiohttp.ClientSession(a_url, auth=auth) as on_a,
        aiohttp.ClientSession(b_url, auth=auth) as on_b,
    ):
        device_id, token = await _register(on_a)
        events: asyncio.Queue[float] = asyncio.Queue()
        reader = asyncio.create_task(_read_events(a_url, token, events))
        try:
            for api in (on_a, on_b):  # B learns of the phone over the bus (its registry)
                await _until_connected(api, device_id, reader)
            sides = {"other node": Side(), "same node": Side()}
            sessions = {"other node": on_b, "same node": on_a}
            for n in range(2 * (WARMUP + samples)):
                name = "other node" if n % 2 == 0 else "same node"
                side = sides[name] if n >= 2 * WARMUP else Side()
                await _one(sessions[name], events, side, reader)
                await asyncio.sleep(gap)
            return sides
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def _one(
    api: aiohttp.ClientSession, events: asyncio.Queue[float], side: Side, reader: asyncio.Task[None]
) -> None:
    while not events.empty():  # nothing left over from before counts for this send
        events.get_nowait()
    sent = time.perf_counter()
    async with api.post(
        INGEST_PATH, data=BODY, headers={"Content-Type": "application/json"}
    ) as answer:
        await answer.read()
        if answer.status != 200:
            raise RuntimeError(f"the send answered {answer.status}")
    answered = time.perf_counter()
    try:
        heard = await asyncio.wait_for(events.get(), EVENT_TIMEOUT_SECONDS)
    except TimeoutError:
        if reader.done():
            reader.result()  # the stream failed: say why
        side.missed += 1
        return
    side.after_answer.append((heard - answered) * 1000)
    side.after_request.append((heard - sent) * 1000)


async def _register(api: aiohttp.ClientSession) -> tuple[str, str]:
    """A phone registered with the account's login (as the app does it): id and token."""
    async with api.post(f"{MOBILE}/device", json={"name": "bench/nodes"}) as answer:
        if answer.status not in (200, 201):
            raise RuntimeError(f"registration answered {answer.status}: {await answer.text()}")
        data = await answer.json()
    return str(data["id"]), str(data["token"])


async def _until_connected(
    api: aiohttp.ClientSession, device_id: str, reader: asyncio.Task[None], within: float = 30
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if reader.done():
            reader.result()
        async with api.get("/api/3rdparty/v1/devices") as answer:
            devices = await answer.json()
        if any(d["id"] == device_id and d["connected"] for d in devices):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"a node did not see the phone connected within {within} s")


async def _read_events(url: str, token: str, events: asyncio.Queue[float]) -> None:
    """The phone's event stream, by hand: a GET, then the time of each MessageEnqueued
    line (the answer's chunk framing shows as lines of their own, which are passed over)."""
    where = urlsplit(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        writer.write(
            (
                f"GET {MOBILE}/events HTTP/1.1\r\nHost: {where.netloc}\r\n"
                f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
        )
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"the event stream answered {status!r}")
        while line := await reader.readline():
            if line.startswith(b"event: MessageEnqueued"):
                events.put_nowait(time.perf_counter())
        raise RuntimeError("the event stream ended")
    finally:
        writer.close()


def _percentiles(name: str, values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        f"{name}_p50_ms": round(cuts[49], 3),
        f"{name}_p99_ms": round(cuts[98], 3),
        f"{name}_max_ms": round(max(values), 3),
    }
