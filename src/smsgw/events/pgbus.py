"""The bus between nodes on one PostgreSQL database: LISTEN/NOTIFY (issue 16).

Every server process on the database (each node, and each of a node's SMSGW_WORKERS) is a
member with a random name. It listens on two channels of its own database: `smsgw`, which
every member hears (broadcasts), and `smsgw_<name>`, which only it hears (what is meant for
the phones whose streams it holds). Members come and go: nothing lists them in advance, the
hub learns who holds which phone from their registries (events/shared_hub.py).

Two connections per member, outside the pools: one listens and does nothing else (psycopg
hands it the notifications as they arrive), one sends. Messages sent during one pass of the
event loop go together, in one `pg_notify` per channel and payload (a payload holds at most
`MAX_PAYLOAD` bytes; PostgreSQL's limit is 8,000), in one statement.

NOTIFY is not durable: what is sent while a member's listening connection is down is lost to
it. The listener hears its own member's notices too, so it knows it still hears: when it has
not heard itself for `DEAF_SECONDS` (a silent network, a restarted server), or its connection
fails, it reconnects, and then calls the gap handlers, which read afresh what may have been
missed (events/wiring in app.py: phones told to pull and refresh, dashboards refreshed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from smsgw.events.bus import Handler

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("smsgw.events")

#: The channel every member hears; a member's own is CHANNEL + "_" + its name.
CHANNEL = "smsgw"
#: Largest payload sent (PostgreSQL refuses 8,000 bytes or more by default).
MAX_PAYLOAD = 7_900
#: Messages kept while the sending connection is down; older ones are dropped past this.
MAX_PENDING = 10_000
#: A member that has not heard itself for this long takes its listener as deaf.
DEAF_SECONDS = 10.0
#: How often a quiet member says something to itself, to know that it still hears.
ECHO_SECONDS = 2.0
#: First and longest wait before connecting again.
RETRY_SECONDS = 0.2
MAX_RETRY_SECONDS = 5.0
#: TCP keepalives on both connections, so that a dead peer is noticed by the kernel too.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
              "keepalives_count": 3}  # fmt: skip


class PgBus:
    """Sends messages (small JSON lists whose first item is their kind) to the other members
    through PostgreSQL. `send` and `broadcast` never wait: a message leaves at the end of
    this pass of the event loop (or once the sending connection is back)."""

    #: Registry entries or phones per message: a payload holds about 200 of them.
    entries_per_part = 150

    def __init__(self, connect_arguments: dict[str, Any], name: str | None = None) -> None:
        self.name = name or secrets.token_hex(6)
        # Named in pg_stat_activity, so that an operator sees which process each one serves.
        application = {"application_name": f"smsgw bus pid={os.getpid()}"}
        self._arguments = connect_arguments | KEEPALIVES | application
        self._handlers: dict[str, Handler] = {}
        self._gap_handlers: list[Callable[[], None]] = []
        self._pending: list[tuple[str, list[Any]]] = []
        self._wake = asyncio.Event()
        self._sequence = 0
        self._heard_self = time.monotonic()
        self._listening = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sender: psycopg.AsyncConnection[Any] | None = None
        self.dropped = 0
        #: How many times the listener has connected (1 after start, more after gaps).
        self.connections = 0

    @property
    def channel(self) -> str:
        return f"{CHANNEL}_{self.name}"

    def on(self, kind: str, handler: Handler) -> None:
        """Call `handler(sender's name, message)` for each message of `kind` that arrives."""
        self._handlers[kind] = handler

    def on_gap(self, handler: Callable[[], None]) -> None:
        """Call `handler()` when the listener is back after a gap (messages may be lost)."""
        self._gap_handlers.append(handler)

    async def start(self) -> None:
        """Connect and listen; returns once this member hears (an unreachable database
        fails here, as the database itself would)."""
        first = await self._listener()
        self._tasks = [
            asyncio.create_task(self._listen(first), name="smsgw-bus-listen"),
            asyncio.create_task(self._send_loop(), name="smsgw-bus-send"),
            asyncio.create_task(self._echo_loop(), name="smsgw-bus-echo"),
        ]
        await self._listening.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self._drop_sender()

    def send(self, peer: Any, message: list[Any]) -> None:
        """Queue `message` for the member named `peer`."""
        self._queue(f"{CHANNEL}_{peer}", message)

    def broadcast(self, message: list[Any]) -> None:
        self._queue(CHANNEL, message)

    def _queue(self, channel: str, message: list[Any]) -> None:
        if not self._tasks:
            return
        if self._pending and self._pending[-1] == (channel, message):  # said twice: once
            return
        self._pending.append((channel, message))
        if len(self._pending) > MAX_PENDING:
            del self._pending[: len(self._pending) - MAX_PENDING]
            self.dropped += 1
        self._wake.set()

    # Listening.

    async def _listener(self) -> psycopg.AsyncConnection[Any]:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(**self._arguments, autocommit=True)
        try:
            await conn.execute(f'LISTEN "{CHANNEL}"')
            await conn.execute(f'LISTEN "{self.channel}"')
        except BaseException:
            await conn.close()
            raise
        self.connections += 1
        self._heard_self = time.monotonic()
        return conn

    async def _listen(self, conn: psycopg.AsyncConnection[Any] | None) -> None:
        """Hear until the connection fails or goes deaf; then connect again, and call the
        gap handlers once listening again."""
        import psycopg

        backoff = RETRY_SECONDS
        while True:
            try:
                if conn is None:
                    conn = await self._listener()
                    log.warning("bus: listening again; reading afresh what may have been missed")
                    self._gap()
                self._listening.set()
                backoff = RETRY_SECONDS
                await self._hear(conn)
                log.warning("bus: heard nothing of itself for %.0f s; reconnecting", DEAF_SECONDS)
            except (psycopg.Error, OSError) as error:
                log.warning("bus: listening failed (%s); reconnecting", type(error).__name__)
            if conn is not None:
                with contextlib.suppress(psycopg.Error, OSError):
                    await conn.close()
                conn = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_RETRY_SECONDS)

    async def _hear(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Dispatch what arrives; returns when this member has not heard itself for long."""
        while time.monotonic() - self._heard_self < DEAF_SECONDS:
            async for notice in conn.notifies(timeout=1.0):
                self._dispatch(notice.payload)

    def _gap(self) -> None:
        for handler in self._gap_handlers:
            try:
                handler()
            except Exception:  # one failing catch-up must not stop the others
                log.exception("bus: a catch-up after a gap failed")

    def _dispatch(self, payload: str) -> None:
        try:
            sender, _sequence, messages = json.loads(payload)
            if not isinstance(sender, str) or not isinstance(messages, list):
                raise ValueError("not a bus payload")
        except (ValueError, TypeError, RecursionError):
            log.warning("bus: an unreadable notice was ignored")
            return
        if sender == self.name:  # a broadcast of its own, or an echo: it still hears
            self._heard_self = time.monotonic()
            return
        for message in messages:
            try:
                handler = self._handlers.get(message[0])
                if handler is not None:
                    handler(sender, message)
            except Exception:  # one bad message must not stop the others
                log.exception("bus: a message was not understood")

    # Sending.

    async def _echo_loop(self) -> None:
        """Say something to itself when quiet, so that the listener knows it hears."""
        while True:
            await asyncio.sleep(ECHO_SECONDS)
            if time.monotonic() - self._heard_self >= ECHO_SECONDS:
                self._queue(self.channel, ["."])

    async def _send_loop(self) -> None:
        import psycopg

        backoff = RETRY_SECONDS
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, []
            channels, payloads = self._payloads(pending)
            if not channels:
                continue
            try:
                conn = await self._sending()
                await conn.execute(
                    "SELECT pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) AS n(c, p)",
                    (channels, payloads),
                )
                backoff = RETRY_SECONDS
            except (psycopg.Error, OSError) as error:
                log.warning("bus: sending failed (%s); trying again", type(error).__name__)
                await self._drop_sender()
                self._pending[:0] = pending  # before what came meanwhile, in order
                if len(self._pending) > MAX_PENDING:
                    self.dropped += 1
                    del self._pending[: len(self._pending) - MAX_PENDING]
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_RETRY_SECONDS)
                self._wake.set()

    def _payloads(self, pending: list[tuple[str, list[Any]]]) -> tuple[list[str], list[str]]:
        """The pending messages as payloads of at most MAX_PAYLOAD bytes: consecutive
        messages to one channel share one; a message too big on its own is dropped."""
        channels: list[str] = []
        payloads: list[str] = []
        start = 0
        while start < len(pending):
            channel = pending[start][0]
            end = start + 1
            while end < len(pending) and pending[end][0] == channel:
                end += 1
            while start < end:
                count = end - start
                payload = self._encode([m for _, m in pending[start : start + count]])
                while count > 1 and len(payload) > MAX_PAYLOAD:
                    count = (count + 1) // 2
                    payload = self._encode([m for _, m in pending[start : start + count]])
                if len(payload) > MAX_PAYLOAD:
                    log.error("bus: a %r message of %d bytes was too big to send",
                              pending[start][1][0], len(payload))  # fmt: skip
                    self.dropped += 1
                else:
                    channels.append(channel)
                    payloads.append(payload)
                start += count
        return channels, payloads

    def _encode(self, messages: list[list[Any]]) -> str:
        # A sequence number keeps two equal payloads of one statement apart (PostgreSQL
        # delivers a repeated channel and payload of one transaction only once).
        self._sequence += 1
        return json.dumps([self.name, self._sequence, messages], separators=(",", ":"))

    async def _sending(self) -> psycopg.AsyncConnection[Any]:
        import psycopg

        if self._sender is None or self._sender.closed:
            self._sender = await psycopg.AsyncConnection.connect(**self._arguments, autocommit=True)
        return self._sender

    async def _drop_sender(self) -> None:
        import psycopg

        sender, self._sender = self._sender, None
        if sender is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await sender.close()
