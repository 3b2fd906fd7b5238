"""The bus between nodes on one PostgreSQL database: LISTEN/NOTIFY (issue 16).

Every server process on the database (each node, and each of a node's SMSGW_WORKERS) is a
member with a random name. It listens on two channels of its own database: `smsgw`, which
every member hears (broadcasts), and `smsgw_<name>`, which only it hears (what is meant for
the phones whose streams it holds). Members come and go: nothing lists them in advance, the
hub learns who holds which phone from their registries (events/shared_hub.py).

Two connections per member, outside the pools: one listens and does nothing else (psycopg
hands it the notifications as they arrive), one sends. Messages sent during one pass of the
event loop go together, in one `pg_notify` per channel and payload (a payload holds at most
`MAX_PAYLOAD` bytes; PostgreSQL's limit is 8,000), in one statement. On stop, what is still
pending is sent (for up to `STOP_SECONDS`).

Any role that may connect to the database may LISTEN and NOTIFY on its channels. So every
payload carries a MAC under a key derived from the JWT secret, which every node shares (and
checks at start, tokens/rotation.py), with its sender's sequence number and the time it was
sent: a notice without the right MAC, or replayed (a sequence number of its sender already
heard, or older than `REPLAY_SECONDS`), is dropped. What the payloads say is signed, not
encrypted: phone and user ids, and digests (never the logins or addresses) of the sign-in
limits' keys (docs/deployment.md: keep other roles off the database).

NOTIFY is not durable: what is sent while a member's listening connection is down is lost to
it. The listener hears its own member's notices too, so it knows it still hears: when a
notice to itself that PostgreSQL took has not come back within `DEAF_SECONDS` (a silent
network, a restarted server), or its connection fails, it reconnects, and then calls the gap
handlers, which read afresh what may have been missed (app.py: phones told to pull and
refresh, dashboards refreshed).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from smsgw.events.bus import Handler, hand_out

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("smsgw.events")

#: The channel every member hears; a member's own is CHANNEL + "_" + its name.
CHANNEL = "smsgw"
#: Largest payload sent (PostgreSQL refuses 8,000 bytes or more by default), its MAC included.
MAX_PAYLOAD = 7_900
#: Hex characters of the MAC that starts every payload.
MAC_LENGTH = 32
#: Messages kept while the sending connection is down; older ones are dropped past this.
MAX_PENDING = 10_000
#: A notice to itself not back this long after PostgreSQL took it: the listener is deaf.
DEAF_SECONDS = 10.0
#: A notice sent longer ago than this (by the sender's clock) is taken as replayed.
REPLAY_SECONDS = 300.0
#: Senders whose last sequence number is remembered (the oldest are forgotten past this).
MAX_SENDERS = 10_000
#: How long a stopping member still tries to send what is pending.
STOP_SECONDS = 2.0
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

    def __init__(
        self, connect_arguments: dict[str, Any], key: bytes, name: str | None = None
    ) -> None:
        self.name = name or secrets.token_hex(6)
        self._key = key
        self.forged = 0
        # Named in pg_stat_activity, so that an operator sees which process each one serves.
        application = {"application_name": f"smsgw bus pid={os.getpid()}"}
        self._arguments = connect_arguments | KEEPALIVES | application
        self._handlers: dict[str, Handler] = {}
        self._gap_handlers: list[Callable[[], None]] = []
        self._pending: list[tuple[str, list[Any]]] = []
        self._wake = asyncio.Event()
        self._sequence = 0
        #: When a notice to itself, taken by PostgreSQL, was first left unheard (None: none).
        self._unheard_since: float | None = None
        self._last_heard: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._closing = False
        self._listening = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sender: psycopg.AsyncConnection[Any] | None = None
        #: Set while nothing is pending or being sent (what a stop waits for).
        self._idle = asyncio.Event()
        self._idle.set()
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
        self._tasks = [  # the sending task first (stop lets it finish)
            asyncio.create_task(self._send_loop(), name="smsgw-bus-send"),
            asyncio.create_task(self._listen(first), name="smsgw-bus-listen"),
            asyncio.create_task(self._echo_loop(), name="smsgw-bus-echo"),
        ]
        await self._listening.wait()

    async def stop(self) -> None:
        """Send what is pending (for up to STOP_SECONDS), then close both connections."""
        self._closing = True
        if not self._tasks:
            return
        sender, *others = self._tasks
        for task in others:
            task.cancel()
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), STOP_SECONDS)
        sender.cancel()
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
        if not self._tasks or self._closing:
            return
        # A hint said twice in a row says nothing more (a count, "t", always does).
        if self._pending and self._pending[-1] == (channel, message) and message[0] != "t":
            return
        self._pending.append((channel, message))
        self._idle.clear()
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
        self._unheard_since = None
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
            finally:
                if conn is not None:
                    with contextlib.suppress(psycopg.Error, OSError):
                        await conn.close()
                    conn = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_RETRY_SECONDS)

    async def _hear(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Dispatch what arrives; returns when a notice to itself has not come back for
        long. (Checked after each second of dispatching what has arrived, so that a loop
        held up for a while first reads what waited for it.)"""
        while True:
            async for notice in conn.notifies(timeout=1.0):
                self._dispatch(notice.payload)
            unheard = self._unheard_since
            if unheard is not None and time.monotonic() - unheard > DEAF_SECONDS:
                return

    def _gap(self) -> None:
        for handler in self._gap_handlers:
            try:
                handler()
            except Exception:  # one failing catch-up must not stop the others
                log.exception("bus: a catch-up after a gap failed")

    def _dispatch(self, payload: str) -> None:
        mac, body = payload[:MAC_LENGTH], payload[MAC_LENGTH:]
        if not hmac.compare_digest(mac, self._mac(body)):
            self._forged("without this cluster's signature")
            return
        try:
            sender, sequence, sent_at, messages = json.loads(body)
            if not isinstance(sender, str) or not isinstance(messages, list):
                raise ValueError("not a bus payload")
            sequence, sent_at = int(sequence), float(sent_at)
        except (ValueError, TypeError, RecursionError):
            log.warning("bus: an unreadable notice was ignored")
            return
        if sequence <= self._last_heard.get(sender, 0) or (
            abs(time.time() - sent_at) > REPLAY_SECONDS
        ):
            self._forged("replayed")
            return
        self._last_heard[sender] = sequence
        self._last_heard.move_to_end(sender)
        if len(self._last_heard) > MAX_SENDERS:
            self._last_heard.popitem(last=False)
        if sender == self.name:  # a broadcast of its own, or an echo: it still hears
            self._unheard_since = None
            return
        hand_out(self._handlers, sender, messages)

    def _forged(self, why: str) -> None:
        self.forged += 1
        if self.forged in (1, 10, 100) or self.forged % 1000 == 0:  # not a log flood
            log.warning("bus: %d notices were ignored, the last %s (another database "
                        "user NOTIFYing?)", self.forged, why)  # fmt: skip

    # Sending.

    async def _echo_loop(self) -> None:
        """Say something to itself now and then, so that the listener knows it hears."""
        while True:
            await asyncio.sleep(ECHO_SECONDS)
            self._queue(self.channel, ["."])

    async def _send_loop(self) -> None:
        import psycopg

        backoff = RETRY_SECONDS
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, []
            channels, payloads = self._payloads(pending)
            try:
                if not channels:
                    continue
                conn = await self._sending()
                await conn.execute(
                    "SELECT pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) AS n(c, p)",
                    (channels, payloads),
                )
                if self.channel in channels or CHANNEL in channels:  # back to itself soon
                    self._unheard_since = self._unheard_since or time.monotonic()
                backoff = RETRY_SECONDS
            except (psycopg.OperationalError, OSError) as error:  # the connection: again
                log.warning("bus: sending failed (%s); trying again", type(error).__name__)
                await self._drop_sender()
                self._pending[:0] = pending  # before what came meanwhile, in order
                if len(self._pending) > MAX_PENDING:
                    self.dropped += 1
                    del self._pending[: len(self._pending) - MAX_PENDING]
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_RETRY_SECONDS)
                self._wake.set()
            except Exception:  # the statement itself: sending it again would fail again
                log.exception("bus: %d notices could not be sent and were dropped", len(channels))
                self.dropped += len(pending)
            finally:
                if not self._pending:
                    self._idle.set()

    def _payloads(self, pending: list[tuple[str, list[Any]]]) -> tuple[list[str], list[str]]:
        """The pending messages as payloads of at most MAX_PAYLOAD characters: consecutive
        messages to one channel share one; a message too big on its own is dropped. Each
        message is encoded once and packed by length (a long backlog costs linear time)."""
        channels: list[str] = []
        payloads: list[str] = []
        room = MAX_PAYLOAD - MAC_LENGTH - 100  # the envelope: name, numbers, brackets
        batch: list[str] = []
        size = 0
        current: str | None = None
        for channel, message in pending:
            encoded = json.dumps(message, separators=(",", ":"))
            if len(encoded) > room:
                log.error("bus: a %r message of %d bytes was too big to send",
                          message[0], len(encoded))  # fmt: skip
                self.dropped += 1
                continue
            if batch and (channel != current or size + len(encoded) + 1 > room):
                channels.append(current or CHANNEL)
                payloads.append(self._encode(batch))
                batch, size = [], 0
            current = channel
            batch.append(encoded)
            size += len(encoded) + 1
        if batch:
            channels.append(current or CHANNEL)
            payloads.append(self._encode(batch))
        return channels, payloads

    def _encode(self, messages: list[str]) -> str:
        """The payload of these encoded messages: MAC, then sender, sequence number (which
        also keeps two equal payloads of one statement apart: PostgreSQL would deliver
        them once), time sent, messages."""
        self._sequence += 1
        envelope = json.dumps([self.name, self._sequence, round(time.time(), 3)])
        body = f"{envelope[:-1]},[{','.join(messages)}]]"
        return self._mac(body) + body

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:MAC_LENGTH]

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
