"""Idle event streams: how many one server process holds, and the memory each costs.

The client side is raw asyncio streams with a hand-written HTTP/1.1 request (no httpx), so
that ten thousand connections fit in the benchmark process too.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

import httpx

from bench.fleet.server import PASSWORD, Server, rss_bytes

MOBILE = "/api/mobile/v1"


@dataclass
class Level:
    connections: int
    server_rss_mib: float
    per_connection_kib: float | None
    client_rss_mib: float | None
    open_seconds: float


@dataclass
class SseResult:
    devices: int
    target: int
    reached: int
    baseline_rss_mib: float
    levels: list[Level]
    marginal_kib_per_connection: float | None
    errors: dict[str, int] = field(default_factory=dict)


def register_devices(server: Server, count: int) -> list[str]:
    """Register `count` phones with Basic auth; returns their bearer tokens."""
    tokens = []
    with httpx.Client(base_url=server.base_url + MOBILE, timeout=30) as client:
        for number in range(count):
            body = {"name": f"idle-{number}", "simCards": [{"slotIndex": 0, "simNumber": 1}]}
            answer = client.post("/device", json=body, auth=("idle", PASSWORD))
            answer.raise_for_status()
            tokens.append(answer.json()["token"])
    return tokens


class Stream:
    """One idle SSE connection: open, check the answer is 200 text/event-stream, then hold."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    @classmethod
    async def open(cls, port: int, token: str) -> Stream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = (
            f"GET {MOBILE}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n"
            "User-Agent: me.capcom.smsgateway/1.68.0\r\n\r\n"
        )
        try:
            writer.write(request.encode())
            head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).decode("latin-1")
            status = head.split("\r\n", 1)[0]
            if " 200 " not in status + " " or "text/event-stream" not in head.lower():
                raise RuntimeError(f"answer {status!r}")
        except BaseException:
            writer.close()
            raise
        return cls(writer)

    def close(self) -> None:
        self.writer.close()


async def run_sse(
    server: Server, devices: int, levels: list[int], concurrency: int, settle: float
) -> tuple[SseResult, list[Stream]]:
    """Open streams up to each level in turn and read the server's RSS at each."""
    tokens = register_devices(server, devices)
    await asyncio.sleep(settle)
    baseline = rss_bytes(server.pid)
    if baseline is None:
        raise RuntimeError("no /proc/<pid>/status: cannot read the server's memory")
    streams: list[Stream] = []
    errors: dict[str, int] = {}
    measured: list[Level] = []
    gate = asyncio.Semaphore(concurrency)

    async def open_one(index: int) -> None:
        async with gate:
            try:
                streams.append(await Stream.open(server.port, tokens[index % len(tokens)]))
            except (OSError, RuntimeError, TimeoutError, asyncio.IncompleteReadError) as error:
                key = f"{type(error).__name__}: {error}"[:120]
                errors[key] = errors.get(key, 0) + 1

    for level in levels:
        started = time.monotonic()
        await asyncio.gather(*(open_one(i) for i in range(len(streams), level)))
        opened = time.monotonic() - started
        await asyncio.sleep(settle)
        rss = rss_bytes(server.pid) or 0
        count = len(streams)
        client_rss = rss_bytes_self()
        measured.append(
            Level(
                connections=count,
                server_rss_mib=round(rss / 2**20, 1),
                per_connection_kib=round((rss - baseline) / count / 1024, 1) if count else None,
                client_rss_mib=round(client_rss / 2**20, 1) if client_rss else None,
                open_seconds=round(opened, 2),
            )
        )
        if errors:
            break  # the maximum is reached: report it and why
    marginal = None
    if len(measured) >= 2 and measured[-1].connections > measured[0].connections:
        grown = (measured[-1].server_rss_mib - measured[0].server_rss_mib) * 1024
        marginal = round(grown / (measured[-1].connections - measured[0].connections), 1)
    result = SseResult(
        devices=devices,
        target=levels[-1],
        reached=len(streams),
        baseline_rss_mib=round(baseline / 2**20, 1),
        levels=measured,
        marginal_kib_per_connection=marginal,
        errors=errors,
    )
    return result, streams


def rss_bytes_self() -> int | None:
    return rss_bytes(os.getpid())
