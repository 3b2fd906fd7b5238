"""A lean API client for bench/smpp's load: JSON POSTs over keep-alive HTTP/1.1 connections,
one request at a time on each, written with asyncio's streams.

bench/smpp runs its load on the machine it measures (2 cores: the server, the links'
process, the simulator and the load share them). aiohttp's client cost this process about
0.2 ms of CPU a request, a fifth of a core at 1,000 a second; this one about half of that
(docs/performance.md, bench/smpp: "a leaner load"). It speaks only what the bench needs of
the server: a request with `Content-Length`, an answer with `Content-Length` (uvicorn's for
every JSON answer); a connection the server closes is not used again. Anything else is an
error that says so, as is an answer that takes longer than TIMEOUT_SECONDS. A POST is
never sent twice.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from urllib.parse import urlsplit

#: The most bytes of an answer's head (status line and headers) read.
HEAD_LIMIT = 64 * 1024
#: A connection idle for longer is closed rather than used again: uvicorn closes one idle
#: for its keep-alive timeout (5 s), and a request written as it does would be lost.
IDLE_SECONDS = 2.0
#: The longest a connection's opening, or a request and its answer, may take (aiohttp's
#: 30 s before): a server that stalls fails the run rather than hanging it.
TIMEOUT_SECONDS = 30.0


class PosterError(Exception):
    """The server answered something this client does not read (or not at all)."""


class Connection:
    """One keep-alive connection to the server: one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes, bool]:
        """Send `head` (request line and headers, up to the Content-Length's value) and
        `body`; the answer's status and body, and whether the connection stays open."""
        self.writer.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
        try:
            answer = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            raise PosterError("the server closed the connection before answering") from error
        status_line, _, headers = answer.partition(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise PosterError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
        length, keep = None, parts[0] != b"HTTP/1.0"
        for line in headers.split(b"\r\n"):
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value.strip())
            elif lowered == b"transfer-encoding":
                raise PosterError("a chunked answer (this client reads Content-Length only)")
            elif lowered == b"connection":
                keep = value.strip().lower() == b"keep-alive" or (
                    keep and value.strip().lower() != b"close"
                )
        if length is None:
            raise PosterError("an answer without Content-Length")
        return int(parts[1]), await self.reader.readexactly(length), keep

    async def close(self) -> None:
        self.writer.close()
        with suppress(ConnectionError):
            await self.writer.wait_closed()


class Poster:
    """POSTs of JSON to one server as one Basic-auth login, over up to `connections`
    keep-alive connections (each request takes a free one, or opens one)."""

    def __init__(self, base_url: str, login: str, password: str, connections: int) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or url.hostname is None or url.port is None:
            raise ValueError(f"an http://host:port URL, not {base_url!r}")
        self.host, self.port = url.hostname, url.port
        token = base64.b64encode(f"{login}:{password}".encode()).decode()
        self._headers = (
            f"Host: {url.hostname}:{url.port}\r\nAuthorization: Basic {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        #: Connections free, with when each was last used (the latest last).
        self._free: list[tuple[Connection, float]] = []
        self._all: list[Connection] = []
        self._room = asyncio.Semaphore(connections)

    def head(self, path: str) -> bytes:
        """A POST's head for `path` (built once by the caller: it is the same each time)."""
        return f"POST {path} HTTP/1.1\r\n".encode() + self._headers

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        """POST `body` with `head` (`head(path)`): the answer's status and body."""
        async with self._room:
            try:
                async with asyncio.timeout(TIMEOUT_SECONDS):
                    connection = await self._take()
            except TimeoutError as error:
                raise PosterError(f"no connection within {TIMEOUT_SECONDS:g} s") from error
            try:
                async with asyncio.timeout(TIMEOUT_SECONDS):
                    status, content, keep = await connection.post(head, body)
            except TimeoutError as error:
                await self._drop(connection)
                raise PosterError(f"no answer within {TIMEOUT_SECONDS:g} s") from error
            except BaseException:
                await self._drop(connection)
                raise
            if keep:
                self._free.append((connection, time.monotonic()))
            else:  # (the server closes it)
                await self._drop(connection)
            return status, content

    async def _take(self) -> Connection:
        """The free connection used last, if it has not been idle for IDLE_SECONDS (those
        that have are closed), else a new one."""
        while self._free:
            connection, used = self._free.pop()
            if time.monotonic() - used < IDLE_SECONDS and not connection.reader.at_eof():
                return connection
            stale = [connection] + [c for c, _ in self._free]
            self._free.clear()  # (the others were used before it: as idle)
            for old in stale:
                await self._drop(old)
        return await self._open()

    async def _drop(self, connection: Connection) -> None:
        self._all.remove(connection)
        await connection.close()

    async def _open(self) -> Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=HEAD_LIMIT)
        connection = Connection(reader, writer)
        self._all.append(connection)
        return connection

    async def close(self) -> None:
        for connection in self._all:
            await connection.close()
        self._all.clear()
        self._free.clear()


@asynccontextmanager
async def poster(
    base_url: str, login: str, password: str, connections: int
) -> AsyncIterator[Poster]:
    client = Poster(base_url, login, password, connections)
    try:
        yield client
    finally:
        await client.close()
