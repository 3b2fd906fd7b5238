"""The webhook receiver of the benchmark: its own process, a small asyncio HTTP/1.1 server.

`python -m bench.webhooks.receiver PORT KEY` listens on 127.0.0.1:PORT. `POST /hook` answers
`204` at once and notes the arrival (`time.monotonic()`, which on Linux is the same clock in
every process, so the benchmark can subtract its own readings from it), the raw body and the
signature headers; the signatures are checked when the benchmark asks for the arrivals
(`GET /arrivals`), so the hot path does no more than read the request and answer. `GET /count`
says how many requests arrived; `POST /reset` forgets them. Keep-alive connections, requests
with a `Content-Length` only (what httpx sends for a body in bytes).

`ReceiverProcess` starts and stops it from the benchmark and reads it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
#: A signature older or newer than this is refused by receivers that follow docs/webhooks.md.
MAX_SKEW_SECONDS = 300


@dataclass(frozen=True)
class Arrival:
    """One request, as the benchmark reads it back."""

    at: float  # time.monotonic() when the 204 was written
    event_id: str
    event: str
    key: str  # payload.messageId: what the benchmark's report or post was about
    signed: bool  # signature and time stamp check out


class Sink:
    """What arrived, and the answers of the control requests."""

    def __init__(self, key: str) -> None:
        self.key = key.encode()
        self.raw: list[tuple[float, int, bytes, str, str]] = []

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        if method == "POST" and target == "/hook":
            stamp, signature = headers.get("x-timestamp", ""), headers.get("x-signature", "")
            self.raw.append((time.monotonic(), int(time.time()), body, stamp, signature))
            return NO_CONTENT
        if method == "GET" and target == "/count":
            return _json(len(self.raw))
        if method == "GET" and target == "/arrivals":
            return _json([self._check(*item) for item in self.raw])
        if method == "POST" and target == "/reset":
            self.raw.clear()
            return NO_CONTENT
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"

    def _check(
        self, at: float, now: int, body: bytes, stamp: str, signature: str
    ) -> tuple[float, str, str, str, bool]:
        expected = hmac.new(self.key, body + stamp.encode(), hashlib.sha256).hexdigest()
        fresh = stamp.isdigit() and abs(now - int(stamp)) < MAX_SKEW_SECONDS
        signed = hmac.compare_digest(expected, signature) and fresh
        try:
            envelope = json.loads(body)
            payload = envelope.get("payload") or {}
            ids = (str(envelope.get("id")), str(envelope.get("event")), str(payload["messageId"]))
        except (ValueError, KeyError, AttributeError):
            ids = ("", "", "")
        return (at, *ids, signed)


def _json(value: Any) -> bytes:
    body = json.dumps(value, separators=(",", ":")).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


class HookProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, one request after the other on each connection."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            method, target = lines[0].split(" ", 2)[:2]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            total = end + 4 + int(headers.get("content-length") or 0)
            if len(self.buffer) < total:
                return  # the rest of the body is still on its way
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            assert self.transport is not None
            self.transport.write(self.sink.handle(method, target, headers, body))


async def serve(port: int, key: str) -> None:
    sink = Sink(key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HookProtocol(sink), "127.0.0.1", port, backlog=512)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


class ReceiverProcess:
    """`python -m bench.webhooks.receiver` in its own process, stopped on exit."""

    def __init__(self, port: int, key: str, root: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.webhooks.receiver", str(port), key],
            env=env,
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            self.stop()
            sys.exit("bench: the webhook receiver did not start")
        self.client = httpx.AsyncClient(base_url=self.url, timeout=30, trust_env=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def count(self) -> int:
        answer = await self.client.get("/count")
        answer.raise_for_status()
        return int(answer.json())

    async def arrivals(self) -> list[Arrival]:
        answer = await self.client.get("/arrivals")
        answer.raise_for_status()
        return [Arrival(*item) for item in answer.json()]

    async def reset(self) -> None:
        (await self.client.post("/reset")).raise_for_status()

    async def close(self) -> None:
        await self.client.aclose()
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(int(sys.argv[1]), sys.argv[2]))
