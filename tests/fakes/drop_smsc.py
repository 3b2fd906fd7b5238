"""An SMSC that accepts every bind and drops the connection at once, as a carrier does past
its limit on binds or by some policy: a raw SMPP 3.4 socket on 127.0.0.1 that answers the
first PDU (a bind) with its bind_resp, status 0, then closes. It records when each bind came
(time.monotonic), so that a test can see how often a link binds again."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from types import TracebackType

HEADER = struct.Struct(">IIII")  # command_length, command_id, command_status, sequence_number
#: How long it waits for the link to close its side after the bind_resp and its own FIN.
LINGER_SECONDS = 5.0


class DropAfterBind:
    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=50)
        self._listener.settimeout(0.1)  # (a close does not wake accept: it looks now and then)
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._binds: list[float] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def binds(self) -> list[float]:
        """When each bind was answered (time.monotonic), in order."""
        with self._lock:
            return list(self._binds)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=10)
        self._listener.close()

    def __enter__(self) -> DropAfterBind:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            with connection, contextlib.suppress(OSError):  # (the link went first)
                self._bind_and_drop(connection)

    def _bind_and_drop(self, connection: socket.socket) -> None:
        connection.settimeout(LINGER_SECONDS)
        head = _read(connection, HEADER.size)
        if head is None:
            return
        length, command, _, sequence = HEADER.unpack(head)
        if _read(connection, length - HEADER.size) is None:
            return
        body = b"SMSC\0"  # system_id
        answer = HEADER.pack(HEADER.size + len(body), command | 0x80000000, 0, sequence) + body
        connection.sendall(answer)
        with self._lock:
            self._binds.append(time.monotonic())
        # A FIN after the bind_resp rather than a close with unread bytes (a reset, which
        # may throw away the bind_resp before the link reads it); then wait for its close.
        connection.shutdown(socket.SHUT_WR)
        while connection.recv(4096):
            pass


def _read(connection: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
