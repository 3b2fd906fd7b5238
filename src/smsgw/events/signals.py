"""Signals inside one application: a state change announces itself, and whoever cares (a
worker) subscribes when the application starts. Every signal's name is listed here.

A signal carries no data: it only says "look now" to a worker that would otherwise look at
its next poll. (Events to phones go through the hub; events to other server processes
through the bus.)
"""

from __future__ import annotations

from collections.abc import Callable

#: Webhook events were just put in the outbox: the delivery worker sends them now.
OUTBOX_FILLED = "outbox-filled"
NAMES = (OUTBOX_FILLED,)


class Signals:
    """The listeners of each signal of one application."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[[], None]]] = {name: [] for name in NAMES}

    def subscribe(self, name: str, listener: Callable[[], None]) -> None:
        self._listeners[name].append(listener)

    def emit(self, name: str) -> None:
        for listener in self._listeners[name]:
            listener()
