"""A sliding-window rate limiter kept in memory (per server process)."""

from __future__ import annotations

import math
import time
from collections import deque

from smsgw.domain.errors import TooManyRequests


class RateLimiter:
    """At most `limit` events per key in any `window` seconds (0 turns the limit off)."""

    def __init__(self, limit: int, window: float = 60.0, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._events: dict[str, deque[float]] = {}

    def hit(self, key: str, what: str) -> None:
        """Count one event for `key`, or raise TooManyRequests with a Retry-After."""
        if self.limit == 0:
            return
        now = time.monotonic()
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit:
            retry_after = max(1, math.ceil(events[0] + self.window - now))
            raise TooManyRequests(f"too many {what}; try again in {retry_after} s", retry_after)
        events.append(now)
        if len(self._events) > self.max_keys:
            self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        idle = [k for k, v in self._events.items() if not v or v[-1] <= now - self.window]
        for key in idle:
            del self._events[key]
