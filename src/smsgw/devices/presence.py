"""When each phone was last heard from, kept in memory and written to the database in batches.

Every authenticated phone request marks the phone as seen; a worker persists the marks every
`presence_flush_seconds` (never moving last_seen backwards), so a busy phone costs no database
write per request.
"""

from __future__ import annotations

from datetime import datetime

from smsgw.domain import clock


class Presence:
    def __init__(self) -> None:
        self._seen: dict[str, datetime] = {}
        self._unsaved: dict[str, datetime] = {}

    def mark(self, device_id: str) -> None:
        now = clock.now()
        self._seen[device_id] = now
        self._unsaved[device_id] = now

    def last_seen(self, device_id: str, stored: datetime) -> datetime:
        """The latest of the stored time and what this process has seen since."""
        seen = self._seen.get(device_id)
        return seen if seen is not None and seen > stored else stored

    def take_unsaved(self) -> dict[str, datetime]:
        unsaved, self._unsaved = self._unsaved, {}
        return unsaved

    def restore(self, unsaved: dict[str, datetime]) -> None:
        """Put back marks whose write failed, so the next flush retries them."""
        for device_id, seen in unsaved.items():
            current = self._unsaved.get(device_id)
            if current is None or current < seen:
                self._unsaved[device_id] = seen

    def forget(self, device_id: str) -> None:
        self._seen.pop(device_id, None)
        self._unsaved.pop(device_id, None)
