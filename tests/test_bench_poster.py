"""bench/smpp's lean API client (bench/smpp/poster.py) against a small HTTP/1.1 server on
127.0.0.1: keep-alive connections used again, an idle one replaced before the server's
keep-alive timeout can close it under a request, and answers it does not read refused."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from bench.smpp import poster as poster_module
from bench.smpp.poster import PosterError, poster

pytestmark = pytest.mark.one_engine("no database")  # conftest.py

Answer = Callable[[bytes], bytes]


def json_answer(body: bytes) -> bytes:
    content = b'{"seen":%d}' % len(body)
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(content),
        content,
    )


class Server:
    """Reads requests with Content-Length; answers each with `answer(body)`; records each
    request's head and body, and each connection it accepted."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                writer.write(self.answer(body))
                await writer.drain()
        finally:
            writer.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def listening(handler: Handler) -> AsyncIterator[str]:
    """A server on 127.0.0.1 whose connections `handler` serves: its URL."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[tuple[Server, str]]:
    server = Server(answer)
    async with listening(server.serve) as url:
        yield server, url


def test_posts_go_over_few_connections_kept_open_with_basic_auth() -> None:
    async def run() -> None:
        async with serving(json_answer) as (server, url), poster(url, "bob", "pw", 4) as client:
            head = client.head("/api/3rdparty/v1/messages")
            answers = await asyncio.gather(*(client.post(head, b"x" * n) for n in range(40)))
            assert answers == [(200, b'{"seen":%d}' % n) for n in range(40)]
            assert 1 <= server.connections <= 4
            first = server.requests[0][0]
            assert first.startswith(b"POST /api/3rdparty/v1/messages HTTP/1.1\r\n")
            token = base64.b64encode(b"bob:pw")
            assert b"Authorization: Basic " + token + b"\r\n" in first
            assert b"Content-Type: application/json\r\n" in first
            assert sorted(len(body) for _, body in server.requests) == list(range(40))

    asyncio.run(run())


def test_a_connection_idle_too_long_is_replaced_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn closes a connection idle for its keep-alive timeout: one idle for
    IDLE_SECONDS (here 0) is not used again, so no request is written into it as it does."""
    monkeypatch.setattr(poster_module, "IDLE_SECONDS", 0.0)

    async def run() -> None:
        async with serving(json_answer) as (server, url), poster(url, "bob", "pw", 1) as client:
            head = client.head("/m")
            assert (await client.post(head, b"a"))[0] == 200
            assert (await client.post(head, b"b"))[0] == 200
            assert server.connections == 2

    asyncio.run(run())


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", "chunked"),
        (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n", "without Content-Length"),
        (b"SMTP ready\r\n\r\n", "not an HTTP/1.x answer"),
    ],
)
def test_an_answer_it_cannot_read_is_an_error_that_says_why(answer: bytes, says: str) -> None:
    async def run() -> None:
        async with serving(lambda _: answer) as (_, url), poster(url, "bob", "pw", 1) as client:
            with pytest.raises(PosterError, match=says):
                await client.post(client.head("/m"), b"{}")

    asyncio.run(run())


def test_a_server_that_hangs_up_before_answering_is_an_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async def run() -> None:
        async with listening(hang_up) as url, poster(url, "bob", "pw", 1) as client:
            with pytest.raises(PosterError, match="closed the connection"):
                await client.post(client.head("/m"), b"{}")

    asyncio.run(run())


def test_a_connection_the_server_closes_is_not_used_again() -> None:
    """Said (`Connection: close`, or HTTP/1.0 without keep-alive) or done (the server
    closes it after answering): the answer is read and returned, the next request goes
    over a new connection."""

    def closing(body: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"

    def old_style(body: bytes) -> bytes:
        return b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"

    async def run(answer: Answer) -> int:
        async with serving(answer) as (server, url), poster(url, "bob", "pw", 1) as client:
            head = client.head("/m")
            assert [await client.post(head, b"{}") for _ in range(3)] == [(200, b"ok")] * 3
            return server.connections

    assert asyncio.run(run(closing)) == 3
    assert asyncio.run(run(old_style)) == 3

    async def hang_up_after_answering(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(json_answer(b"{}"))
        await writer.drain()
        writer.close()

    async def silently_closed() -> None:
        async with listening(hang_up_after_answering) as url, poster(url, "bob", "pw", 1) as client:
            head = client.head("/m")
            assert (await client.post(head, b"{}"))[0] == 200
            kept = client._free[0][0]
            async with asyncio.timeout(30):  # until the end of the stream is seen
                while not kept.reader.at_eof():  # noqa: ASYNC110 (a stream's state)
                    await asyncio.sleep(0.01)
            assert (await client.post(head, b"{}"))[0] == 200  # over a new connection

    asyncio.run(silently_closed())


def test_a_server_that_never_answers_fails_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poster_module, "TIMEOUT_SECONDS", 0.2)
    never = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await never.wait()

    async def run() -> None:
        async with listening(silent) as url, poster(url, "bob", "pw", 1) as client:
            try:
                with pytest.raises(PosterError, match=r"no answer within 0\.2 s"):
                    await client.post(client.head("/m"), b"{}")
            finally:
                never.set()

    asyncio.run(run())
