"""The supervisor of carrier links (links/), run by every server process where links are on
(SMSGW_LINKS, the default).

Each round it takes or renews the lease on the links no other process runs
(links/service.py: `lease`), starts a runner (links/runner.py) for each link it newly holds,
and stops those of links it no longer holds (deleted, or taken over after its lease ran
out). Rounds come every second; a runner is poked at once when one of its owner's messages
changes (the user feed: a message queued, here or through another process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from smsgw.config import Settings
from smsgw.db.engine import Database
from smsgw.devices.presence import Presence
from smsgw.domain import ids
from smsgw.events import signals
from smsgw.events.signals import Signals
from smsgw.events.user_feed import feed_of
from smsgw.links import service as links
from smsgw.links.runner import LinkOptions, LinkRunner
from smsgw.optouts import service as optouts
from smsgw.webhooks.hub import OptOutWords

log = logging.getLogger("smsgw.links")
#: How long a process's lease on running a link lasts without renewal.
LEASE_SECONDS = 30.0
#: The pause between two rounds.
POLL_SECONDS = 1.0
#: How long a stopping runner may take to drain and unbind before it is cancelled.
STOP_SECONDS = 15.0


class LinkSupervisor:
    def __init__(
        self, settings: Settings, db: Database, presence: Presence, signals: Signals
    ) -> None:
        self.db, self.presence, self.signals = db, presence, signals
        self.name = ids.random_token(16)
        words = OptOutWords(optouts.keywords(settings.opt_out_words), settings.default_region)
        self.options = LinkOptions(
            settings.link_connect_timeout_seconds, settings.link_reconnect_max_seconds,
            settings.claim_cap, POLL_SECONDS, words,
            timedelta(seconds=settings.online_window_seconds),
        )  # fmt: skip
        self.runners: dict[str, tuple[LinkRunner, asyncio.Task[None], int]] = {}

    def heard(self, user_id: int) -> None:
        """A notice of the user feed: poke the runners of that owner's links, and of the
        links for all accounts."""
        for runner, _, owner in self.runners.values():
            if owner == user_id or runner.link.all_accounts:
                runner.poke()

    async def round(self) -> None:
        held = {
            link.device_id: link for link in await links.lease(self.db, self.name, LEASE_SECONDS)
        }
        for device_id in [d for d in self.runners if d not in held]:
            await self._stop(device_id)
        if await links.join_stale(self.db, held, self.options.opt_outs):
            self.signals.emit(signals.OUTBOX_FILLED)
        for device_id, link in held.items():
            self.presence.mark(device_id)  # a link at work is online: its claims stay its own
            running = self.runners.get(device_id)
            if running is not None and not running[1].done():
                continue
            if running is not None and not running[1].cancelled() and running[1].exception():
                log.error("link %s failed; starting it again", device_id,
                          exc_info=running[1].exception())  # fmt: skip
            runner = LinkRunner(self.db, link, self.options, self.signals)
            task = asyncio.create_task(runner.run(), name=f"smsgw-link-{device_id}")
            self.runners[device_id] = (runner, task, link.user_id)

    async def _stop(self, device_id: str) -> None:
        runner, task, _ = self.runners.pop(device_id)
        await runner.stop()
        done, _ = await asyncio.wait([task], timeout=STOP_SECONDS)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif not task.cancelled() and task.exception() is not None:
            log.error("link %s failed", device_id, exc_info=task.exception())

    async def run(self) -> None:
        feed_of(self.db).watchers.append(self.heard)
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the links' round failed; retrying next round")
            await asyncio.sleep(POLL_SECONDS)

    async def stop(self) -> None:
        """Stop every runner (each unbinds) and give up this process's leases."""
        feed = feed_of(self.db)
        if self.heard in feed.watchers:
            feed.watchers.remove(self.heard)
        await asyncio.gather(*(self._stop(d) for d in list(self.runners)))
        try:
            await links.release(self.db, self.name)
        except Exception:
            log.exception("could not give up the links' leases")
