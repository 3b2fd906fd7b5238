"""The event hub of a process among several (SMSGW_WORKERS > 1, or any number of nodes on
one PostgreSQL database): phones connected anywhere.

A phone's event stream is held by whichever node accepted its connection. Each node tells the
others which phones it holds (the registry: on every change, a moment later, and every
`HEARTBEAT_SECONDS`); a node not heard from for `EXPIRY_SECONDS` is taken as gone with its
phones. So `is_connected`, `devices_of`, `pick` and the counts see every node's phones, and
`publish` hands an event for a phone held elsewhere to that node over the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from smsgw.events.bus import EventBus, Node
from smsgw.events.hub import TOLD_FOR_SECONDS, Event, EventHub, PhoneEvent, Stream, Told

HEARTBEAT_SECONDS = 2.0
EXPIRY_SECONDS = 3 * HEARTBEAT_SECONDS + 1
#: How long after a stream opens or closes the node tells the others (changes coalesce).
ANNOUNCE_DELAY_SECONDS = 0.02


@dataclass
class _NodeView:
    """What one other node said it holds: phone -> (owner, open streams)."""

    phones: dict[str, tuple[int, int]] = field(default_factory=dict)
    heard: float = 0.0
    generation: int = -1
    parts_seen: int = 0


class SharedHub(EventHub):
    """An EventHub that also knows, and reaches, the phones held by the other nodes."""

    def __init__(self, bus: EventBus) -> None:
        super().__init__()
        self.bus = bus
        self._views: dict[Node, _NodeView] = {}
        self._incoming: dict[Node, _NodeView] = {}
        self._where: dict[str, set[Node]] = {}
        self._remote_owned: dict[int, set[str]] = {}
        self._remote_streams = 0
        self._generation = 0
        self._announce_handle: asyncio.TimerHandle | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._asks: dict[str, Callable[[list[str]], None]] = {}
        bus.on("p", self._on_publish)
        bus.on("r", self._on_registry)
        bus.on("a", self._on_ask)

    async def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat(), name="smsgw-hub-heartbeat")

    async def stop(self) -> None:
        """Stop the heartbeat, and tell the others at once what is left here (the streams
        are ended on stop: the others stop sending this process its phones' events)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self._announce_handle is not None:
            self._announce_handle.cancel()
            self._announce()

    # Local streams: as EventHub, plus telling the others.

    def open(self, device_id: str, user_id: int) -> tuple[Stream, bool]:
        opened = super().open(device_id, user_id)
        self._changed()
        return opened

    def close(self, device_id: str, user_id: int, stream: Stream) -> None:
        super().close(device_id, user_id, stream)
        self._changed()

    def held(self) -> set[str]:
        """The phones whose streams this process holds."""
        return set(self._streams)

    def resync(self) -> None:
        """Tell the others again, now, which phones are here (after a gap on the bus)."""
        if self._announce_handle is not None:
            self._announce_handle.cancel()
        self._announce()

    # Questions about every node's phones.

    def is_connected(self, device_id: str) -> bool:
        return device_id in self._streams or device_id in self._where

    def devices_of(self, user_id: int) -> set[str]:
        return super().devices_of(user_id) | self._remote_owned.get(user_id, set())

    def connected(self) -> set[str]:
        return super().connected() | set(self._where)

    def stream_count(self) -> int:
        return super().stream_count() + self._remote_streams

    def pick_for_new(self, user_id: int, cap: int) -> list[str]:
        """A phone in turn for every new message: a phone's pull may be served by another
        process, which this hub would not see (EventHub.pick_for_new). What it was told of
        is still counted, so that a pull served here that had no room for all of it passes
        the rest on (`pulling`); one served elsewhere leaves it to the periodic worker."""
        now = self.clock()
        told = self._told[user_id]
        for device_id, entry in list(told.items()):
            if now - entry.at > TOLD_FOR_SECONDS:
                del told[device_id]
        targets = self.pick(user_id, 1)
        for device_id in targets:
            if device_id in told:
                told[device_id].messages += 1
            else:
                told[device_id] = Told(now)
        if not told:
            del self._told[user_id]
        return targets

    def publish(self, device_ids: list[str] | set[str], event: Event) -> int:
        delivered = super().publish(device_ids, event)
        for node, phones in self._holders(device_ids).items():
            self._send_in_parts(
                node, phones, lambda part: ["p", part, event.name.value, event.data]
            )
            delivered += len(phones)
        return delivered

    def ask_holders(self, kind: str, device_ids: list[str]) -> None:
        for node, phones in self._holders(device_ids).items():
            self._send_in_parts(node, phones, lambda part: ["a", kind, part])

    def _holders(self, device_ids: Iterable[str]) -> dict[Node, list[str]]:
        """The other nodes holding streams of these phones, each with its phones."""
        remote: dict[Node, list[str]] = defaultdict(list)
        for device_id in device_ids:
            for node in self._where.get(device_id, ()):
                remote[node].append(device_id)
        return remote

    def _send_in_parts(
        self, node: Node, phones: list[str], message: Callable[[list[str]], list[Any]]
    ) -> None:
        size = self.bus.entries_per_part  # a datagram or a notice holds only so many
        for i in range(0, len(phones), size):
            self.bus.send(node, message(phones[i : i + size]))

    def on_ask(self, kind: str, handler: Callable[[list[str]], None]) -> None:
        """Call `handler(phones held here)` when another process asks `kind` of them."""
        self._asks[kind] = handler

    # The bus.

    def _on_ask(self, _sender: Node, message: list[Any]) -> None:
        _, kind, phones = message
        handler = self._asks.get(kind)
        held = [device_id for device_id in phones if self.holds(device_id)]
        if handler is not None and held:
            handler(held)

    def _on_publish(self, _sender: Node, message: list[Any]) -> None:
        _, phones, name, data = message
        EventHub.publish(self, phones, Event(PhoneEvent(name), data))

    def _on_registry(self, sender: Node, message: list[Any]) -> None:
        _, generation, _part, parts, entries = message  # parts arrive in order: count them
        if not isinstance(parts, int) or parts < 1:
            raise ValueError("a registry in no parts")
        view = self._incoming.get(sender)
        if view is None or view.generation != generation:
            view = self._incoming[sender] = _NodeView(generation=generation)
        for device_id, user_id, streams in entries:
            view.phones[device_id] = (int(user_id), int(streams))
        view.parts_seen += 1
        if view.parts_seen == parts:
            view.heard = self.clock()
            self._views[sender] = self._incoming.pop(sender)
            self._reindex()

    def _reindex(self) -> None:
        where: dict[str, set[Node]] = defaultdict(set)
        owned: dict[int, set[str]] = defaultdict(set)
        streams = 0
        for node, view in self._views.items():
            for device_id, (user_id, count) in view.phones.items():
                where[device_id].add(node)
                owned[user_id].add(device_id)
                streams += count
        self._where, self._remote_owned, self._remote_streams = where, owned, streams

    def _changed(self) -> None:
        if self._announce_handle is None:
            loop = asyncio.get_running_loop()
            self._announce_handle = loop.call_later(ANNOUNCE_DELAY_SECONDS, self._announce)

    def _announce(self) -> None:
        """Send this node's whole registry to every other node (in parts if large)."""
        self._announce_handle = None
        self._generation += 1
        entries = [
            [device_id, user_id, len(self._streams.get(device_id, ()))]
            for user_id, phones in self._owned.items()
            for device_id in phones
        ]
        size = self.bus.entries_per_part
        parts = [entries[i : i + size] for i in range(0, len(entries), size)] or [[]]
        for index, part in enumerate(parts):
            self.bus.broadcast(["r", self._generation, index, len(parts), part])

    def _expire(self) -> None:
        oldest = self.clock() - EXPIRY_SECONDS
        gone = [node for node, view in self._views.items() if view.heard < oldest]
        for node in gone:
            del self._views[node]
        if gone:
            self._reindex()

    async def _beat(self) -> None:
        while True:
            self._announce()
            self._expire()
            await asyncio.sleep(HEARTBEAT_SECONDS)
