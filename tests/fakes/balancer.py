"""A TCP load balancer on 127.0.0.1, as in front of several nodes: each new connection goes to
the next backend in turn, or to the one after when that one refuses (a node that is down).
No sticky sessions, no HTTP knowledge: bytes are passed both ways until either side closes.
"""

from __future__ import annotations

import asyncio
import contextlib


class Balancer:
    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.port = 0
        self.connections: dict[int, int] = dict.fromkeys(backends, 0)
        self._turn = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Balancer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        for pipe in list(self._pipes):
            with contextlib.suppress(BaseException):
                await pipe
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(len(self.backends)):
            port = self.backends[self._turn % len(self.backends)]
            self._turn += 1
            try:
                upstream = await asyncio.open_connection("127.0.0.1", port)
            except OSError:  # down: the next one
                continue
            self.connections[port] += 1
            up_reader, up_writer = upstream
            for task in (
                asyncio.create_task(_pipe(reader, up_writer)),
                asyncio.create_task(_pipe(up_reader, writer)),
            ):
                self._pipes.add(task)
                task.add_done_callback(self._pipes.discard)
            return
        writer.close()  # every backend is down


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
