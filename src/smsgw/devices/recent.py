"""Phones whose token was found valid a moment ago, for the phones' two hot paths.

A phone pulls and reports many times a second under load, and each request looked its token
up in the database (9% of the server's time in bench/fleet's capacity phase). The pull and
report fast paths (api/mobile/messages.py) ask here first: a token found valid less than
`seconds` ago is taken as the same phone without a read.

What that can cost, and why it is safe (docs/auth.md, "Phones' tokens on the hot paths"):
a phone deleted through another process or node is still taken as itself there for at most
`seconds`; its pulls then find no phone row (`routing.pull_unit` returns nothing) and its
reports match no message (its messages were detached), so it gets empty answers rather than
401 until the entry ends. Deleting a phone, changing its SIM list or app version in this
process forgets it here at once. Only valid tokens are kept (a wrong token is looked up
every time, so guessing gains nothing), by their SHA-256, never the token itself.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smsgw.devices.service import DeviceAuth

#: How long a token found valid is taken as valid without a read.
RECENT_SECONDS = 2.0
#: Phones kept at most (the least recently used go first).
RECENT_PHONES = 10_000


class RecentPhones:
    def __init__(
        self,
        seconds: float = RECENT_SECONDS,
        max_size: int = RECENT_PHONES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seconds = seconds
        self._max_size = max_size
        self._monotonic = monotonic
        self._entries: OrderedDict[str, tuple[float, DeviceAuth]] = OrderedDict()

    def get(self, hashed: str) -> DeviceAuth | None:
        """The phone of the token with this hash, when it was found valid recently."""
        entry = self._entries.get(hashed)
        if entry is None:
            return None
        if self._monotonic() >= entry[0]:
            del self._entries[hashed]
            return None
        return entry[1]

    def put(self, hashed: str, auth: DeviceAuth) -> None:
        if self._max_size <= 0 or self._seconds <= 0:
            return
        self._entries[hashed] = (self._monotonic() + self._seconds, auth)
        self._entries.move_to_end(hashed)
        while len(self._entries) > self._max_size:
            self._entries.popitem(last=False)

    def forget(self, device_id: str) -> None:
        """Drop the phone (deleted, or its SIM list changed): its next request reads it."""
        for hashed in [h for h, (_, auth) in self._entries.items() if auth.device_id == device_id]:
            del self._entries[hashed]

    def __len__(self) -> int:
        return len(self._entries)
