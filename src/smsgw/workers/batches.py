"""The sender of the dashboard's bulk sends (bulk/service.py), one per server process.

A confirmed batch is sent at once by the process that confirmed it (`start`), in chunks,
holding a lease that each chunk renews. Every SMSGW_WORKER_INTERVAL_SECONDS this process also
looks for batches whose sender stopped (its lease ran out: a restart, a crash) and takes them
over (`run`); rows already queued are not queued again (their ids were chosen at upload).
"""

from __future__ import annotations

import asyncio
import logging

from smsgw.bulk import service as bulk
from smsgw.config import Settings
from smsgw.db.engine import Database
from smsgw.domain.states import ProcessingState
from smsgw.events import signals
from smsgw.events.hub import EventHub
from smsgw.events.signals import Signals
from smsgw.messages.repository import MessageRecord
from smsgw.routing import service as routing

log = logging.getLogger("smsgw.workers")


class BatchSender:
    def __init__(self, settings: Settings, db: Database, hub: EventHub, signals: Signals):
        self.settings = settings
        self.db = db
        self.hub = hub
        self.signals = signals
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def after(self, user_id: int, records: list[MessageRecord]) -> None:
        """A chunk is queued: wake phones as `POST /messages` does, webhooks for opt-outs."""
        cap = self.settings.claim_cap
        for device_id in {r.device_id for r in records if r.state == ProcessingState.PENDING}:
            routing.wake_for_new(self.hub, user_id, device_id, cap)
        if any(recipient.error for record in records for recipient in record.recipients):
            self.signals.emit(signals.OUTBOX_FILLED)

    def start(self, batch_id: str) -> None:
        """Send a batch this process holds the lease of, in the background."""
        if batch_id in self._tasks:
            return
        work = bulk.send(self.db, self.settings.default_region, batch_id, self.after)
        task = asyncio.get_running_loop().create_task(work, name=f"smsgw-batch-{batch_id}")
        self._tasks[batch_id] = task
        task.add_done_callback(lambda done: self._ended(batch_id, done))

    def _ended(self, batch_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(batch_id, None)
        if not task.cancelled() and task.exception() is not None:
            # The lease runs out and a round of `run` (here or elsewhere) takes it over.
            log.error("bulk send %s failed", batch_id, exc_info=task.exception())

    async def resume(self) -> None:
        """Take over the batches whose sender stopped."""
        for batch_id in await bulk.stale(self.db):
            if batch_id not in self._tasks and await bulk.take(self.db, batch_id):
                log.info("bulk send %s: taken over", batch_id)
                self.start(batch_id)

    async def run(self) -> None:
        while True:
            try:
                await self.resume()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bulk sends: round failed; retrying next round")
            await asyncio.sleep(self.settings.worker_interval_seconds)

    async def stop(self) -> None:
        """Stop sending (the leases run out: the next start, or another process, goes on)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
