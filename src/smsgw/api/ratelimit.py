"""Sliding-window limits kept in memory (per server process): request rates and failed
sign-ins (the authentication throttle, rule in docs/auth.md)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from smsgw.domain.errors import TooManyRequests

#: Logins are at most 64 characters: a longer one is kept by its first 64, so that a
#: flood of huge made-up logins cannot make the throttle's memory grow with their size.
LOGIN_KEY_LENGTH = 64


class RateLimiter:
    """At most `limit` events per key in any `window` seconds (0 turns the limit off)."""

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        #: Seconds on a monotonic scale; tests swap it to step through windows.
        self.clock = clock
        self._events: dict[str, deque[float]] = {}

    def hit(self, key: str, what: str) -> None:
        """Count one event for `key`, or raise TooManyRequests with a Retry-After."""
        retry_after = self.blocked_for(key)
        if retry_after is not None:
            raise TooManyRequests(f"too many {what}; try again in {retry_after} s", retry_after)
        self.count(key)

    def blocked_for(self, key: str) -> int | None:
        """Seconds until `key` may have another event; None when it may now. Counts nothing."""
        events = self._events.get(key)
        if self.limit == 0 or not events:
            return None
        now = self.clock()
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) < self.limit:
            return None
        return max(1, math.ceil(events[0] + self.window - now))

    def count(self, key: str) -> None:
        """Record one event for `key` (whether or not it is over the limit)."""
        if self.limit == 0:
            return
        now = self.clock()
        self._events.setdefault(key, deque(maxlen=self.limit)).append(now)
        if len(self._events) > self.max_keys:
            self._forget_idle(now)

    def forget(self, key: str) -> None:
        self._events.pop(key, None)

    def _forget_idle(self, now: float) -> None:
        idle = [k for k, v in self._events.items() if not v or v[-1] <= now - self.window]
        for key in idle:
            del self._events[key]
        while len(self._events) > self.max_keys:  # all busy: drop the longest-known keys
            del self._events[next(iter(self._events))]


class AuthThrottle:
    """Failed sign-ins counted per client address and per login, in one sliding window.

    An address or a login with `per_address` / `per_login` failures within `window` seconds
    is refused (429) until the oldest of them leaves the window; refused attempts are not
    counted, so a block ends at most `window` seconds after the attacker's last counted
    failure. A success clears its login's failures (not its address's). Callers let a
    (login, password) pair they have verified before through regardless (see deps.py).
    """

    def __init__(
        self,
        per_address: int,
        per_login: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.addresses = RateLimiter(per_address, window, clock=clock)
        self.logins = RateLimiter(per_login, window, clock=clock)

    def set_clock(self, clock: Callable[[], float]) -> None:
        """Use `clock` from now on (tests: a clock they advance instead of waiting)."""
        self.addresses.clock = self.logins.clock = clock

    def blocked_for(self, address: str, login: str) -> int | None:
        """Seconds the caller must wait, or None when it may try now."""
        waits = (
            self.addresses.blocked_for(address),
            self.logins.blocked_for(login[:LOGIN_KEY_LENGTH]),
        )
        found = [wait for wait in waits if wait is not None]
        return max(found) if found else None

    def failed(self, address: str, login: str) -> None:
        self.addresses.count(address)
        self.logins.count(login[:LOGIN_KEY_LENGTH])

    def succeeded(self, login: str) -> None:
        self.logins.forget(login[:LOGIN_KEY_LENGTH])
