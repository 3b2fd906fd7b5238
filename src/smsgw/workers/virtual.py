"""The driver of virtual phones (virtualphones/), run by every server process where they
are on (SMSGW_MODE=development, or SMSGW_VIRTUAL_PHONES=true).

Each round it takes or renews the lease on the virtual phones no other process drives
(virtualphones/service.py: `lease`), and works each phone it holds as the app would: pull,
Processed, and after the phone's delay its scripted outcome. It runs at once when one of
their owners' messages changes (the user feed: a message queued, here or through another
process), else every second (or every SMSGW_WORKER_INTERVAL_SECONDS when shorter), and
sooner when a message comes due before that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from smsgw.config import Settings
from smsgw.db.engine import Database
from smsgw.devices.presence import Presence
from smsgw.domain import clock, ids
from smsgw.events import signals
from smsgw.events.signals import Signals
from smsgw.events.user_feed import feed_of
from smsgw.routing.budgets import server_limits
from smsgw.virtualphones import service as virtual

log = logging.getLogger("smsgw.workers")
#: How long a process's lease on driving a phone lasts without renewal (on the clock).
LEASE_SECONDS = 30.0
#: The longest pause between two rounds.
POLL_SECONDS = 1.0


class VirtualDriver:
    def __init__(self, settings: Settings, db: Database, presence: Presence, signals: Signals):
        self.settings = settings
        self.db = db
        self.presence = presence
        self.signals = signals
        #: This process's name on the leases.
        self.name = ids.random_token(16)
        self.poll = min(POLL_SECONDS, settings.worker_interval_seconds)
        self.limits = server_limits(settings)
        self._owners: set[int] = set()
        self._poke = asyncio.Event()

    def heard(self, user_id: int) -> None:
        """A notice of the user feed: run now if it is about an owner of a phone here."""
        if user_id in self._owners:
            self._poke.set()

    async def round(self) -> float:
        """Drive every phone this process holds once; how long to pause before the next."""
        phones = await virtual.lease(self.db, self.name, LEASE_SECONDS)
        self._owners = {phone.user_id for phone in phones}
        pause, events = self.poll, 0
        for phone in phones:
            self.presence.mark(phone.device_id)  # a phone at work is online
            drove = await virtual.drive(self.db, phone, self.settings.claim_cap, self.limits)
            events += drove.events
            if drove.more:
                pause = 0.0
            elif drove.next_due is not None:
                pause = min(pause, max(0.0, (drove.next_due - clock.now()).total_seconds()))
        if events:
            self.signals.emit(signals.OUTBOX_FILLED)
        return pause

    async def run(self) -> None:
        feed_of(self.db).watchers.append(self.heard)
        while True:
            self._poke.clear()
            try:
                pause = await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("virtual phones' round failed; retrying next round")
                pause = self.poll
            if pause > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poke.wait(), pause)

    async def stop(self) -> None:
        """Give up this process's leases, so that another process drives the phones now."""
        feed = feed_of(self.db)
        if self.heard in feed.watchers:
            feed.watchers.remove(self.heard)
        try:
            await virtual.release(self.db, self.name)
        except Exception:
            log.exception("could not give up the virtual phones' leases")
