"""Sliding-window limits kept in memory: request rates and failed sign-ins (the
authentication throttle, rule in docs/auth.md).

Each server process keeps its own counts, and, when there are several processes or nodes,
tells the others of every event it counts or takes back (`relay`), which count it too
(`heard`): so a client gets the same budget however its requests are spread (app.py,
`share_limits`)."""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from smsgw.domain import clock as domain_clock
from smsgw.domain.errors import TooManyRequests

#: Logins are at most 64 characters: a longer one is kept by its first 64, so that a
#: flood of huge made-up logins cannot make the throttle's memory grow with their size.
LOGIN_KEY_LENGTH = 64
CODES_KEY = "*"
#: Events counted for other processes that are remembered, to take them back when told.
MAX_REMOTE = 10_000

#: Tells the other processes: `relay(op, key, stamp)`, op "+" (counted) or "-" (taken back).
Relay = Callable[[str, str, float], None]


class RateLimiter:
    """At most `limit` events per key in any `window` seconds (0 turns the limit off)."""

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        #: Seconds on a monotonic scale; tests swap it to step through windows.
        self.clock = clock if clock is not None else domain_clock.monotonic
        self._events: dict[str, deque[float]] = {}
        #: Set when other processes share the limit: each event counted or taken back here.
        self.relay: Relay | None = None
        #: Set with `relay`: what a key is kept and told as (a keyed digest, so that what
        #: is said between processes names no login or address).
        self.keyed: Callable[[str], str] | None = None
        #: Events another process counted: (sender, its stamp, key) -> the stamp here.
        self._remote: OrderedDict[tuple[object, float, str], float] = OrderedDict()

    def hit(self, key: str, what: str) -> None:
        """Count one event for `key`, or raise TooManyRequests with a Retry-After."""
        retry_after = self.blocked_for(key)
        if retry_after is not None:
            raise TooManyRequests(f"too many {what}; try again in {retry_after} s", retry_after)
        self.count(key)

    def _key(self, key: str) -> str:
        return key if self.keyed is None else self.keyed(key)

    def blocked_for(self, key: str) -> int | None:
        """Seconds until `key` may have another event; None when it may now. Counts nothing."""
        if not self._events:  # the common case: nothing counted, no key to work out
            return None
        events = self._events.get(self._key(key))
        if self.limit == 0 or not events:
            return None
        now = self.clock()
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) < self.limit:
            return None
        return max(1, math.ceil(events[0] + self.window - now))

    def count(self, key: str, now: float | None = None) -> float:
        """Record one event for `key` (whether or not it is over the limit); its time."""
        key = self._key(key)
        now = self._record(key, now)
        if self.relay is not None and self.limit != 0:
            self.relay("+", key, now)
        return now

    def _record(self, key: str, now: float | None = None) -> float:
        now = self.clock() if now is None else now
        if self.limit == 0:
            return now
        self._events.setdefault(key, deque(maxlen=self.limit)).append(now)
        if len(self._events) > self.max_keys:
            self._forget_idle(now)
        return now

    def uncount(self, key: str, stamp: float) -> None:
        """Take back one event of `key` recorded at `stamp` (if it is still there)."""
        key = self._key(key)
        self._remove(key, stamp)
        if self.relay is not None and self.limit != 0:
            self.relay("-", key, stamp)

    def _remove(self, key: str, stamp: float) -> None:
        events = self._events.get(key)
        with contextlib.suppress(ValueError):
            if events is not None:
                events.remove(stamp)

    def heard(self, sender: object, op: str, key: str, stamp: float) -> None:
        """Another process counted an event (`op` "+", counted here at this moment) or took
        one back ("-", the one it counted at `stamp`)."""
        key = key[:LOGIN_KEY_LENGTH]
        remote = (sender, stamp, key)
        if op == "+":
            here = self._remote[remote] = self._record(key)
            # Forget what left the window (never taken back: failures), and past MAX_REMOTE.
            while self._remote and (
                len(self._remote) > MAX_REMOTE
                or next(iter(self._remote.values())) <= here - self.window
            ):
                self._remote.popitem(last=False)
        elif op == "-":
            counted = self._remote.pop(remote, None)
            if counted is not None:
                self._remove(key, counted)

    def _forget_idle(self, now: float) -> None:
        idle = [k for k, v in self._events.items() if not v or v[-1] <= now - self.window]
        for key in idle:
            del self._events[key]
        while len(self._events) > self.max_keys:  # all busy: drop the longest-known keys
            del self._events[next(iter(self._events))]


@dataclass(frozen=True)
class Attempt:
    """One sign-in attempt counted as a failure in advance (see AuthThrottle.attempt)."""

    address: str
    login: str | None
    stamp: float
    #: A one-time code: also counted in the cap of wrong codes from all addresses.
    code: bool = False


class AuthThrottle:
    """Failed sign-ins counted per client address and per login, in one sliding window.

    An address or a login with `per_address` / `per_login` failures within `window` seconds
    is refused (429) for every attempt, right or wrong, until the oldest of them leaves the
    window; refused attempts are not counted. An attempt is counted as a failure *before* its
    secret is checked (`attempt`) and un-counted only if it proves right (`release`): so
    however many guesses run at once, no more than the limit are ever checked in a window.
    A success removes only its own count, never others' failures (rule in docs/auth.md).
    """

    def __init__(
        self,
        per_address: int,
        per_login: int,
        window: float,
        code_failures: int = 100,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.addresses = RateLimiter(per_address, window, clock=clock)
        self.logins = RateLimiter(per_login, window, clock=clock)
        #: Wrong one-time codes from every address together: a code names no login, and an
        #: attacker has many addresses, so guesses at the short codes are capped in all.
        self.codes = RateLimiter(code_failures, window, clock=clock)

    def set_clock(self, clock: Callable[[], float]) -> None:
        """Use `clock` from now on (tests: a clock they advance instead of waiting)."""
        self.addresses.clock = self.logins.clock = self.codes.clock = clock

    def code_attempt(self, address: str) -> Attempt:
        """`attempt` for a one-time code, from `address`: refused while the address or all
        addresses together have had too many wrong codes, and counted in both."""
        self.refuse_if_blocked(address, None)
        wait = self.codes.blocked_for(CODES_KEY)
        if wait is not None:
            message = f"too many wrong codes from all addresses; try again in {wait} s"
            raise TooManyRequests(message, wait)
        stamp = self.addresses.count(address)
        self.codes.count(CODES_KEY, stamp)
        return Attempt(address, None, stamp, code=True)

    def blocked_for(self, address: str, login: str | None) -> int | None:
        """Seconds the caller must wait, or None when it may try now."""
        waits = [self.addresses.blocked_for(address)]
        if login is not None:
            waits.append(self.logins.blocked_for(login[:LOGIN_KEY_LENGTH]))
        found = [wait for wait in waits if wait is not None]
        return max(found) if found else None

    def refuse_if_blocked(self, address: str, login: str | None) -> None:
        """TooManyRequests (with the wait) while the address or the login is blocked."""
        wait = self.blocked_for(address, login)
        if wait is not None:
            raise TooManyRequests(f"too many failed sign-ins; try again in {wait} s", wait)

    def attempt(self, address: str, login: str | None) -> Attempt:
        """Count an attempt about to check a secret (`login` None: a secret of no login, such
        as a one-time code); TooManyRequests instead while blocked. No await may come
        between the check and the count, so concurrent guesses cannot overshoot."""
        self.refuse_if_blocked(address, login)
        key = None if login is None else login[:LOGIN_KEY_LENGTH]
        stamp = self.addresses.count(address)
        if key is not None:
            self.logins.count(key, stamp)
        return Attempt(address, key, stamp)

    def release(self, attempt: Attempt) -> None:
        """The attempt proved right: it is not a failure after all."""
        self.addresses.uncount(attempt.address, attempt.stamp)
        if attempt.code:
            self.codes.uncount(CODES_KEY, attempt.stamp)
        if attempt.login is not None:
            self.logins.uncount(attempt.login, attempt.stamp)

    def failed(self, address: str, login: str) -> None:
        """Count one failure of `login` from `address` (without checking the limits)."""
        stamp = self.addresses.count(address)
        self.logins.count(login[:LOGIN_KEY_LENGTH], stamp)
