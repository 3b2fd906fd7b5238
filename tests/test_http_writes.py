"""The transport under `smsgw serve`'s HTTP protocol (cli/serve.py `HttpProtocol`): what uvicorn
writes in one step of the event loop goes to the socket as one write, an answer's head and
body together; a streamed answer's parts still go as they are written, a large body as it is,
and an answer followed by the connection's close arrives whole.

A real uvicorn server on 127.0.0.1 and raw HTTP/1.1 over a socket; the protocol under test is
subclassed only to record what reaches the real transport."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from smsgw.cli.serve import HttpProtocol

pytestmark = pytest.mark.one_engine("no database")  # conftest.py

LARGE = 1024 * 1024
PIECES = 200  # of 1,000 bytes each: 200 KB


class Recorded:
    """A transport that records each write reaching it, and passes it on."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport, self._writes = transport, writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


#: every connection's transport as the protocol has it (HttpProtocol: its OneWrite)
TRANSPORTS: list[asyncio.Transport] = []
#: set by /half-closed once its answer is written (and held)
WRITTEN = threading.Event()


class HeldUntilFin(JSONResponse):
    """An answer whose sender then blocks the event loop until the client's FIN is in the
    connection's socket: what it wrote is held until the step ends."""

    def __init__(self, content: Any, fd: int) -> None:
        super().__init__(content)
        self.fd = fd

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # resumed by a timer, as an answer after a wait is (a database's, say): the step's
        # held write is then queued behind the loop's next look at the sockets
        await asyncio.sleep(0.01)
        await super().__call__(scope, receive, send)
        WRITTEN.set()  # the client closes its side now
        with socket.socket(fileno=os.dup(self.fd)) as probe:
            wait_for_fin(probe)


def wait_for_fin(probe: socket.socket) -> None:
    """Until the peer's FIN is in the socket (nothing else is left to read)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                return
        except BlockingIOError:
            pass
        time.sleep(0.01)


def recording(base: type[HttpToolsProtocol], writes: list[bytes]) -> type[HttpToolsProtocol]:
    class Protocol(base):  # type: ignore[valid-type, misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            # under what the protocol makes of its transport (HttpProtocol: OneWrite)
            super().connection_made(Recorded(transport, writes))  # type: ignore[arg-type]
            TRANSPORTS.append(self.transport)

    return Protocol


def app(streamed: asyncio.Event) -> Starlette:
    async def small(request: Request) -> Response:
        return JSONResponse({"id": "abc", "state": "Pending"})

    async def large(request: Request) -> Response:
        return Response(b"x" * LARGE, media_type="application/octet-stream")

    async def stream(request: Request) -> Response:
        async def parts() -> AsyncIterator[bytes]:
            yield b"first\n"
            await streamed.wait()  # set once the client has read the first part
            yield b"second\n"

        return StreamingResponse(parts(), media_type="text/plain")

    async def pieces(request: Request) -> Response:
        async def many() -> AsyncIterator[bytes]:
            for _ in range(PIECES):  # no wait between them: all in one step
                yield b"y" * 1000

        return StreamingResponse(many(), media_type="text/plain")

    async def half_closed(request: Request) -> Response:
        """Its answer, then the rest of the step until the client's FIN has arrived."""
        [transport] = TRANSPORTS[-1:]
        return HeldUntilFin({"ok": True}, transport.get_extra_info("socket").fileno())

    return Starlette(routes=[Route("/small", small), Route("/large", large),
                             Route("/stream", stream), Route("/pieces", pieces),
                             Route("/half-closed", half_closed)])  # fmt: skip


@asynccontextmanager
async def serving(protocol: type[HttpToolsProtocol], streamed: asyncio.Event) -> AsyncIterator[int]:
    config = uvicorn.Config(app(streamed), host="127.0.0.1", port=0, http=protocol,
                            log_level="warning", lifespan="off")  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "the server did not start"
            await asyncio.sleep(0.01)
        [listener] = server.servers[0].sockets
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def exchange(port: int, path: str, close: bool = False) -> bytes:
    """One request on a connection of its own; the whole answer (read until the close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connection = b"close" if close else b"keep-alive"
    writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nConnection: " + connection
                 + b"\r\n\r\n")  # fmt: skip
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))  # fmt: skip
    body = await reader.readexactly(length)
    if close:
        assert await reader.read() == b""  # the server closed it, after the answer
    writer.close()
    return head + body


def scenario(
    protocol: type[HttpToolsProtocol],
    act: Callable[[int, list[bytes], asyncio.Event], Awaitable[None]],
) -> None:
    """`act` against a server of `protocol`, with the writes reaching its real transports."""

    async def main() -> None:
        writes: list[bytes] = []
        streamed = asyncio.Event()
        async with serving(recording(protocol, writes), streamed) as port:
            await act(port, writes, streamed)

    uvloop.run(main())  # as `smsgw serve` runs (uvicorn's loop, when installed)


@pytest.mark.parametrize("close", [False, True], ids=["kept alive", "closed after"])
def test_an_answer_goes_to_the_socket_in_one_write(close: bool) -> None:
    async def act(port: int, writes: list[bytes], streamed: asyncio.Event) -> None:
        answer = await exchange(port, "/small", close)
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"id": "abc", "state": "Pending"}
        assert writes == [answer]

    scenario(HttpProtocol, act)


def test_uvicorns_own_protocol_writes_the_head_and_the_body_apart() -> None:
    """The control: what HttpProtocol changes."""

    async def act(port: int, writes: list[bytes], streamed: asyncio.Event) -> None:
        answer = await exchange(port, "/small")
        head, body = answer.split(b"\r\n\r\n", 1)
        assert writes == [head + b"\r\n\r\n", body]

    scenario(HttpToolsProtocol, act)


def test_a_streamed_answer_goes_out_part_by_part() -> None:
    """Its first part reaches the client while the second is not yet made (a phone's event
    stream is such an answer): held only for the step it was written in."""

    async def act(port: int, writes: list[bytes], streamed: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"first\n"), 30)
        assert first.endswith(b"6\r\nfirst\n")  # chunked: its size, then the part
        streamed.set()
        assert (await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 30)).startswith(
            b"\r\n7\r\nsecond\n"
        )
        writer.close()
        assert len(writes) >= 2

    scenario(HttpProtocol, act)


def test_a_large_body_is_written_as_it_is_after_the_head() -> None:
    async def act(port: int, writes: list[bytes], streamed: asyncio.Event) -> None:
        answer = await exchange(port, "/large")
        head, body = answer.split(b"\r\n\r\n", 1)
        assert body == b"x" * LARGE
        assert writes == [head + b"\r\n\r\n", body]

    scenario(HttpProtocol, act)


def test_the_answer_written_before_the_clients_half_close_still_goes_out() -> None:
    """The client (a thread of its own) sends its request, and closes its side (SHUT_WR)
    once the server has written the answer; the FIN arrives before the step that wrote the
    answer ends. The event loop then closes the transport itself after eof_received (not
    through OneWrite): HttpProtocol sends what it holds first. (Without that, the client got
    no answer at all.)"""
    WRITTEN.clear()

    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /half-closed HTTP/1.1\r\nHost: t\r\n\r\n")
            assert WRITTEN.wait(30)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):  # until the server closes
                answer += chunk
            return answer

    async def act(port: int, writes: list[bytes], streamed: asyncio.Event) -> None:
        answer = await asyncio.to_thread(client, port)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
        assert answer.endswith(b'{"ok":true}')

    scenario(HttpProtocol, act)


def test_what_is_held_goes_out_once_it_reaches_64_kib() -> None:
    """A streamed answer whose 200 parts of 1,000 bytes are all written in one step: held
    up to 64 KiB at a time, not joined into one write of 200 KB past the transport's flow
    control."""

    async def act(port: int, writes: list[bytes], streamed: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        writer.write(b"GET /pieces HTTP/1.1\r\nHost: t\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        body = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 30)
        writer.close()
        assert body.count(b"y" * 1000) == PIECES
        assert 4 <= len(writes) <= 5  # the head, then one write each 64 KiB of chunks
        assert max(len(w) for w in writes) < 2 * 64 * 1024

    scenario(HttpProtocol, act)
