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

from smsgw import heap
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
#: How often an idle link looks for work in `smsgw links run`'s process, which hears of no
#: message queued elsewhere (the server processes' pokes do not reach it).
ALONE_POLL_SECONDS = 0.1
#: How long a stopping runner may take to drain and unbind before it is cancelled.
STOP_SECONDS = 15.0


class LinkSupervisor:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        presence: Presence,
        signals: Signals,
        idle_poll: float = POLL_SECONDS,
    ) -> None:
        """`idle_poll`: how often an idle link looks for work without a poke."""
        self.db, self.presence, self.signals = db, presence, signals
        self.name = ids.random_token(16)
        words = OptOutWords(optouts.keywords(settings.opt_out_words), settings.default_region)
        self.options = LinkOptions(
            settings.link_connect_timeout_seconds, settings.link_reconnect_max_seconds,
            settings.claim_cap, idle_poll, words,
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
        leased = await links.lease(self.db, self.name, LEASE_SECONDS)
        held = {link.device_id: link for link, _ in leased}
        for device_id in [d for d in self.runners if d not in held]:
            await self._stop(device_id)
        if await links.join_stale(self.db, held, self.options.opt_outs):
            self.signals.emit(signals.OUTBOX_FILLED)
        for link, until in leased:
            device_id = link.device_id
            self.presence.mark(device_id)  # a link at work is online: its claims stay its own
            running = self.runners.get(device_id)
            if running is not None and not running[1].done():
                running[0].leased(until)  # (it submits only while the lease lasts)
                continue
            if running is not None and not running[1].cancelled() and running[1].exception():
                log.error("link %s failed; starting it again", device_id,
                          exc_info=running[1].exception())  # fmt: skip
            runner = LinkRunner(self.db, link, self.options, self.signals, self.name, until)
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


async def run_alone(settings: Settings, stop: asyncio.Event) -> None:
    """`smsgw links run`: the carrier links in a process of their own, which serves no HTTP,
    until `stop` is set (then each link unbinds and the leases are given up).

    It takes the links' leases as any server process does (`links.lease`: exactly one
    process drives each link), so the server processes that take the API's traffic run
    with SMSGW_LINKS=false. Beside the links it runs what their work needs in this process:
    webhook delivery, poked when a link's report puts events in the outbox (any process
    may deliver: each takes its rows), and the links' last-seen marks written to the
    database every SMSGW_PRESENCE_FLUSH_SECONDS (another process's stale-claim release
    reads them; a link at work is online)."""
    from smsgw.db.engine import database_for
    from smsgw.events import signals as signal_names
    from smsgw.workers.webhooks import WebhookWorker

    db = database_for(settings)
    presence, signals = Presence(), Signals()
    webhooks = WebhookWorker(settings, db)
    signals.subscribe(signal_names.OUTBOX_FILLED, webhooks.poke)
    supervisor = LinkSupervisor(settings, db, presence, signals, ALONE_POLL_SECONDS)

    async def keep_presence() -> None:
        while True:
            await asyncio.sleep(settings.presence_flush_seconds)
            try:
                await _save_presence(db, presence)
            except Exception:
                log.exception("could not save the links' last-seen marks; retrying")

    heap.freeze_start_up()  # as the server does (app.py)
    tasks = [
        asyncio.create_task(supervisor.run(), name="smsgw-links"),
        asyncio.create_task(webhooks.run(), name="smsgw-webhooks"),
        asyncio.create_task(keep_presence(), name="smsgw-links-presence"),
    ]
    try:
        await stop.wait()
        await webhooks.wind_down()  # the requests out may be answered first
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await webhooks.release_leases()
        await supervisor.stop()
        with contextlib.suppress(Exception):
            await _save_presence(db, presence)
        await db.dispose()


async def _save_presence(db: Database, presence: Presence) -> None:
    from smsgw.devices import service as devices

    unsaved = presence.take_unsaved()
    try:
        await devices.save_presence(db, unsaved)
    except Exception:
        presence.restore(unsaved)
        raise
