"""The bus between the server processes of one `smsgw serve` (SMSGW_WORKERS > 1).

Each process (a *node*) binds a Unix datagram socket in Linux's abstract namespace, named after
the serve run and the node's index, so nothing is left on disk and no other run can hear it.
What nodes tell each other are hints (wake this phone, this user's live views changed, these
phones are connected here), never data: a phone told nothing still finds its work at its next
pull, and the registry of connected phones is re-sent every `HEARTBEAT_SECONDS`.

Messages sent during one pass of the event loop are coalesced into one datagram per peer
(Linux queues only `net.unix.max_dgram_qlen`, 10 by default, datagrams per socket); a peer
whose queue is full keeps its pending messages for the next pass, up to `MAX_PENDING`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("smsgw.events")

#: Largest datagram a node sends; bigger batches are split (the default socket buffer is 208 KiB).
MAX_DATAGRAM = 64 * 1024
#: Messages kept for a peer that cannot take them right now; older ones are dropped past this.
MAX_PENDING = 10_000

#: First and longest wait before sending again to a peer whose queue was full.
RETRY_SECONDS = 0.001
MAX_RETRY_SECONDS = 0.05
#: Most messages encoded into one datagram attempt (a long backlog is not encoded whole).
MAX_MESSAGES = 2000
#: Room for the sender's credentials (pid, uid, gid) the kernel attaches to each datagram.
CREDENTIALS = socket.CMSG_SPACE(struct.calcsize("3i"))

#: What handles a message: called with the sender (a node's index here, a member's name on
#: PostgreSQL: events/pgbus.py) and the message.
Node = int | str
Handler = Callable[[Any, list[Any]], None]


class EventBus(Protocol):
    """What the shared hub needs of a bus: this one between the processes of one serve, or
    PostgreSQL's between every process on one database (events/pgbus.py)."""

    #: Registry entries or phones per message (one message must fit in one datagram/notice).
    entries_per_part: int

    def on(self, kind: str, handler: Handler) -> None: ...

    def send(self, peer: Any, message: list[Any]) -> None: ...

    def broadcast(self, message: list[Any]) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class Cluster:
    """Where a node stands: the serve run's name, this node's index and how many there are."""

    name: str
    index: int
    size: int

    def address(self, index: int) -> bytes:
        return f"\0smsgw-{self.name}-{index}".encode()

    @property
    def peers(self) -> list[int]:
        return [i for i in range(self.size) if i != self.index]


class Bus:
    """Sends messages (small JSON lists whose first item is their kind) to the other nodes."""

    entries_per_part = 500

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._handlers: dict[str, Handler] = {}
        self._pending: dict[int, list[list[Any]]] = {peer: [] for peer in cluster.peers}
        self._flush_scheduled = False
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backoff = RETRY_SECONDS
        self.dropped = 0

    def on(self, kind: str, handler: Handler) -> None:
        """Call `handler(sender index, message)` for each message of `kind` that arrives."""
        self._handlers[kind] = handler

    async def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            # Abstract sockets have no file permissions: the kernel says who sent each
            # datagram, and only this user's processes are heard (see _receive).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            sock.bind(self.cluster.address(self.cluster.index))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._receive)

    async def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.close()

    def close(self) -> None:
        for pending in self._pending.values():
            pending.clear()
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def send(self, peer: int, message: list[Any]) -> None:
        """Queue `message` for `peer`; it leaves at the end of this pass of the event loop."""
        pending = self._pending.get(peer)
        if pending is None or self._sock is None:
            return
        if pending and pending[-1] == message:  # a hint said twice in a row says nothing more
            return
        pending.append(message)  # one over MAX_DATAGRAM on its own is dropped: split it
        if len(pending) > MAX_PENDING:
            del pending[: len(pending) - MAX_PENDING]
            self.dropped += 1
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def broadcast(self, message: list[Any]) -> None:
        for peer in self._pending:
            self.send(peer, message)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._sock is None:  # closed meanwhile
            return
        retry = False
        for peer, pending in self._pending.items():
            while pending:
                data, count = _datagram(self.cluster.index, pending)
                if len(data) > MAX_DATAGRAM:  # one message too big to go: only it is lost
                    log.error("bus: a %r message of %d bytes was too big to send", pending[0][0],
                              len(data))  # fmt: skip
                    self.dropped += 1
                    del pending[:1]
                    continue
                try:
                    self._sock.sendto(data, self.cluster.address(peer))
                except BlockingIOError:  # its queue is full: try again in a moment
                    retry = True
                    break
                except OSError:  # not started yet, or gone: it re-learns from heartbeats
                    pending.clear()
                    break
                del pending[:count]
        self._backoff = min(self._backoff * 2, MAX_RETRY_SECONDS) if retry else RETRY_SECONDS
        if retry and self._loop is not None and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_later(self._backoff, self._flush)

    def _receive(self) -> None:
        while self._sock is not None:
            try:
                data, ancillary, _flags, _address = self._sock.recvmsg(
                    MAX_DATAGRAM + 1, CREDENTIALS
                )
            except OSError:  # nothing more now (BlockingIOError), or closed
                return
            if _sender_uid(ancillary) != os.getuid():
                log.warning("bus: a datagram from another user was ignored")
                continue
            self._dispatch(data)

    def _dispatch(self, data: bytes) -> None:
        try:
            sender, messages = json.loads(data)
            if sender not in self._pending or not isinstance(messages, list):
                raise ValueError("not from a node of this cluster")
        except (ValueError, TypeError, RecursionError):
            log.warning("bus: an unreadable datagram was ignored")
            return
        hand_out(self._handlers, sender, messages)


def hand_out(handlers: dict[str, Handler], sender: Any, messages: list[Any]) -> None:
    """Each message to the handler of its kind (both buses); one bad message does not stop
    the others."""
    for message in messages:
        try:
            handler = handlers.get(message[0])
            if handler is not None:
                handler(sender, message)
        except Exception:
            log.exception("bus: a message was not understood")


def _encode(sender: int, messages: list[list[Any]]) -> bytes:
    return json.dumps([sender, messages], separators=(",", ":")).encode()


def _sender_uid(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            _pid, uid, _gid = struct.unpack("3i", data[: struct.calcsize("3i")])
            return int(uid)
    return None


def _datagram(sender: int, pending: list[list[Any]]) -> tuple[bytes, int]:
    """The first pending messages that fit in one datagram (at least one), and how many."""
    count = min(len(pending), MAX_MESSAGES)
    data = _encode(sender, pending[:count])
    while count > 1 and len(data) > MAX_DATAGRAM:
        count //= 2
        data = _encode(sender, pending[:count])
    return data, count
