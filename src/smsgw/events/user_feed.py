"""Per-user change notices for the dashboard's live views (relayed to the other server
processes, when there are several).

A notice carries no data: it only says "something of yours changed", and the listener reads
fresh state from the database. Feeds are keyed by the Database object, so every application
in a process (tests run several) has its own, and state-change paths need no extra argument.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import defaultdict
from collections.abc import Callable

from smsgw.db.engine import Database


class UserFeed:
    """The open listeners of each user; a notice wakes every one of them."""

    def __init__(self) -> None:
        #: Set once the server is stopping: listeners are woken and should end.
        self.closing = False
        self._listeners: dict[int, set[asyncio.Event]] = defaultdict(set)
        #: Tells the other server processes too (set when there are several: events/bus.py).
        self.relay: Callable[[int], None] | None = None
        #: Called with the user of every notice, here or relayed (the virtual phones' driver).
        self.watchers: list[Callable[[int], None]] = []

    def listen(self, user_id: int) -> asyncio.Event:
        event = asyncio.Event()
        self._listeners[user_id].add(event)
        return event

    def stop(self, user_id: int, event: asyncio.Event) -> None:
        listeners = self._listeners.get(user_id)
        if listeners is not None:
            listeners.discard(event)
            if not listeners:
                del self._listeners[user_id]

    def notify(self, user_id: int) -> None:
        for event in self._listeners.get(user_id, ()):
            event.set()
        for watcher in self.watchers:
            watcher(user_id)

    def notify_all(self) -> None:
        """Wake every listener (notices may have been missed: each reads afresh)."""
        for listeners in self._listeners.values():
            for event in listeners:
                event.set()

    def end_all(self) -> None:
        """The server is stopping: wake every listener, which sees `closing` and ends."""
        self.closing = True
        self.notify_all()

    def listener_count(self) -> int:
        return sum(len(listeners) for listeners in self._listeners.values())


_feeds: weakref.WeakKeyDictionary[Database, UserFeed] = weakref.WeakKeyDictionary()


def feed_of(db: Database) -> UserFeed:
    """The feed of the application that owns `db`."""
    feed = _feeds.get(db)
    if feed is None:
        feed = _feeds[db] = UserFeed()
    return feed


def notify(db: Database, user_id: int) -> None:
    """Tell `user_id`'s live views that one of their messages or phones changed."""
    feed = _feeds.get(db)
    if feed is not None:
        feed.notify(user_id)
        if feed.relay is not None:
            feed.relay(user_id)
