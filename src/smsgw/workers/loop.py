"""The periodic worker of a server process.

Every `worker_interval_seconds` it fails queued messages past validUntil, returns stale
claims to the queue, persists last-seen marks (every `presence_flush_seconds`), and wakes the
connected phones of owners whose queue holds due work (scheduled messages that came due,
released claims, work left after a phone's cap filled or its budget was spent): as many
phones with budget left as the waiting work fills at the claim cap. Once a minute it
deletes what is past its retention or expired, and gives the space back
(workers/retention.py).
Each completed round sets `last_tick`, which the health probes read.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import datetime

from smsgw.config import Settings
from smsgw.db.engine import Database
from smsgw.devices import service as devices
from smsgw.devices.presence import Presence
from smsgw.events.hub import EventHub
from smsgw.messages import service as messages
from smsgw.routing import budgets
from smsgw.routing import service as routing
from smsgw.workers import retention

log = logging.getLogger("smsgw.workers")
#: How often retention runs (workers/retention.py says what it deletes).
PRUNE_SECONDS = 60.0


class Worker:
    def __init__(self, settings: Settings, db: Database, hub: EventHub, presence: Presence) -> None:
        self.settings = settings
        self.db = db
        self.hub = hub
        self.presence = presence
        self.last_tick: float = 0.0
        self._last_flush = time.monotonic()
        self._last_prune: float | None = None

    def heard_since(self, device_id: str, moment: datetime, stored: datetime) -> bool:
        """Connected now, or seen (by this process or as stored) after `moment`."""
        if self.hub.is_connected(device_id):
            return True
        return self.presence.last_seen(device_id, stored) > moment

    async def tick(self) -> None:
        """One round of every periodic task."""
        # Presence first: another server process's stale-claim release reads what this one
        # has heard, so a failure of the tasks below must not hold it back.
        if time.monotonic() - self._last_flush >= self.settings.presence_flush_seconds:
            await self.flush_presence()
        await routing.expire(self.db)
        await routing.release_stale(self.db, self.settings.release_after_seconds, self.heard_since)
        await self.wake_phones()
        await messages.fold_counts(self.db)
        await self.retain()
        self.last_tick = time.monotonic()  # the health probe's "worker alive" (see health/)

    async def wake_phones(self) -> None:
        """Wake the phones whose streams this process holds (so that several processes do
        not all wake the same phones) for the queued work of their owners, as many as that
        work fills at the claim cap, and for their pinned messages that came due."""
        held = self.hub.held_here()
        if not held:
            return
        cap = self.settings.claim_cap
        limits = {user_id: len(phones) * cap for user_id, phones in held.items()}
        queued = await routing.owners_with_work(self.db, limits)
        pinned = await routing.phones_with_due_pinned(self.db, held)
        if not queued and not pinned:
            return
        # A phone whose budget is spent would pull for nothing: it waits for its next window.
        defaults = budgets.server_limits(self.settings)
        room = await budgets.phones_with_room(self.db, set().union(*held.values()), defaults)
        for user_id, waiting in queued:
            count = math.ceil(waiting / cap)
            routing.wake(self.hub, user_id, count=count, here_only=True, among=room)
        for user_id, device_id in pinned:
            if device_id in room:
                routing.wake(self.hub, user_id, device_id=device_id)

    async def retain(self) -> None:
        """Delete what is past its retention or expired, and give the space back
        (workers/retention.py), at most once per PRUNE_SECONDS."""
        if self._last_prune is not None and time.monotonic() - self._last_prune < PRUNE_SECONDS:
            return
        if self._last_prune is None:  # the first round: say if the file cannot shrink
            retention.gives_space_back(self.db, self.settings)
        await retention.sweep(self.db, self.settings)
        self._last_prune = time.monotonic()

    async def flush_presence(self) -> None:
        self._last_flush = time.monotonic()
        unsaved = self.presence.take_unsaved()
        try:
            await devices.save_presence(self.db, unsaved)
        except Exception:
            self.presence.restore(unsaved)
            raise

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker round failed; retrying next round")
            await asyncio.sleep(self.settings.worker_interval_seconds)
