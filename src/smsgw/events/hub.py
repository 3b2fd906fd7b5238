"""The event hub: each phone's open SSE streams, and who is connected right now.

A stream is a bounded queue; a phone that does not read its stream loses the oldest events
rather than growing the server's memory (every event only tells the phone to fetch fresh
state, so a lost one is recovered by the next pull).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class PhoneEvent(StrEnum):
    """Event names exactly as the Android app parses them."""

    MESSAGE_ENQUEUED = "MessageEnqueued"
    MESSAGE_CANCELLED = "MessageCancelled"
    WEBHOOKS_UPDATED = "WebhooksUpdated"
    SETTINGS_UPDATED = "SettingsUpdated"
    MESSAGES_EXPORT_REQUESTED = "MessagesExportRequested"


@dataclass(frozen=True)
class Event:
    name: PhoneEvent
    data: dict[str, str] | None = None

    def frame(self) -> str:
        """The SSE frame: an `event:` line and a `data:` line (never left out)."""
        data = json.dumps(self.data, separators=(",", ":")) if self.data is not None else "null"
        return f"event: {self.name.value}\ndata: {data}\n\n"


STREAM_BUFFER = 16
#: How long a phone told of new work counts as about to pull it (after that, a new message
#: tells a phone again even if that one never pulled).
TOLD_FOR_SECONDS = 1.0


class Stream:
    """One open SSE connection of one phone. `None` in its queue means "end the stream"."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=STREAM_BUFFER)

    def put(self, event: Event | None) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(event)


@dataclass
class Told:
    """A phone told of new work that has not pulled since: when, and how many new messages
    were left to its pull."""

    at: float
    messages: int = 1


class EventHub:
    """Routes events to the open streams of each phone."""

    def __init__(self) -> None:
        #: Set once the server is stopping: every stream is ended, and none opens.
        self.closing = False
        self._streams: dict[str, set[Stream]] = defaultdict(set)
        self._owned: dict[int, set[str]] = defaultdict(set)
        self._turn: dict[int, int] = defaultdict(int)
        #: Per owner: the phones told of new work that have not pulled since.
        self._told: dict[int, dict[str, Told]] = defaultdict(dict)
        self.clock: Callable[[], float] = time.monotonic  # tests step it

    def pick_for_new(self, user_id: int, cap: int) -> list[str]:
        """The phone to tell of one new message of `user_id`: none when a phone told of
        earlier ones has not pulled yet and its pull has room for this one too (up to `cap`
        messages), else the next phone in turn. A burst of messages then costs one pull per
        `cap` of them, not one per message. (Only where this hub sees every pull: one
        server process; SharedHub tells a phone of every message.)"""
        now = self.clock()
        told = self._told[user_id]
        for device_id, entry in list(told.items()):
            if now - entry.at > TOLD_FOR_SECONDS or device_id not in self._streams:
                del told[device_id]
            elif entry.messages < cap:
                entry.messages += 1
                return []
        targets = self.pick(user_id, 1)
        for device_id in targets:
            told[device_id] = Told(now)
        if not told:
            del self._told[user_id]
        return targets

    def pulling(self, user_id: int, device_id: str) -> int:
        """The phone is pulling: what it was told of is about to be taken (a message stored
        from now on tells a phone again). Returns how many new messages were left to it."""
        told = self._told.get(user_id)
        if told is None:
            return 0
        entry = told.pop(device_id, None)
        if not told:
            del self._told[user_id]
        return 0 if entry is None else entry.messages

    def open(self, device_id: str, user_id: int) -> tuple[Stream, bool]:
        """Register a new stream; the flag says whether it is the phone's only one."""
        stream = Stream()
        self._streams[device_id].add(stream)
        self._owned[user_id].add(device_id)
        return stream, len(self._streams[device_id]) == 1

    def close(self, device_id: str, user_id: int, stream: Stream) -> None:
        streams = self._streams.get(device_id)
        if streams is None:
            return
        streams.discard(stream)
        if not streams:
            del self._streams[device_id]
            self._owned[user_id].discard(device_id)
            if not self._owned[user_id]:
                del self._owned[user_id]
                self._turn.pop(user_id, None)
                self._told.pop(user_id, None)
            elif self.pulling(user_id, device_id):
                # It went away with new messages left to its pull: tell another phone.
                self.publish(self.pick(user_id, 1), Event(PhoneEvent.MESSAGE_ENQUEUED))

    def pick(
        self, user_id: int, count: int, here_only: bool = False, among: set[str] | None = None
    ) -> list[str]:
        """Up to `count` of the user's connected phones, taking turns across calls (only
        those whose streams this process holds, with `here_only`, when there are several;
        only those `among`, when given: e.g. the phones with budget left)."""
        phones = sorted(self._owned.get(user_id, ()) if here_only else self.devices_of(user_id))
        if among is not None:
            phones = [device_id for device_id in phones if device_id in among]
        if not phones:
            return []
        start = self._turn[user_id] % len(phones)
        self._turn[user_id] = start + count
        return [phones[(start + i) % len(phones)] for i in range(min(count, len(phones)))]

    def devices_of(self, user_id: int) -> set[str]:
        """The user's phones with an open stream."""
        return set(self._owned.get(user_id, ()))

    def held_here(self) -> dict[int, set[str]]:
        """The phones this process holds a stream of, by owner."""
        return {user_id: set(devices) for user_id, devices in self._owned.items()}

    def is_connected(self, device_id: str) -> bool:
        return device_id in self._streams

    def end_streams(self) -> None:
        """The server is stopping: end every open stream now (its phone reconnects, to this
        server once it is back or to another node), so that the stop need not wait for them."""
        self.closing = True
        for streams in self._streams.values():
            for stream in streams:
                stream.put(None)

    async def stop(self) -> None:
        """Stop what the hub runs in the background (SharedHub); nothing here."""

    def ask_holders(self, kind: str, device_ids: list[str]) -> None:
        """Ask the server processes holding these phones' streams to do `kind` for them
        (SharedHub); with one process, every connected phone is held here: nothing to do."""

    def holds(self, device_id: str) -> bool:
        """Whether this process holds a stream of the phone (is_connected: any process)."""
        return device_id in self._streams

    def connected(self) -> set[str]:
        return set(self._streams)

    def stream_count(self) -> int:
        return sum(len(streams) for streams in self._streams.values())

    def publish(self, device_ids: list[str] | set[str], event: Event) -> int:
        """Send `event` to every open stream of these phones; returns how many got it."""
        delivered = 0
        for device_id in device_ids:
            for stream in self._streams.get(device_id, ()):
                stream.put(event)
                delivered += 1
        return delivered
