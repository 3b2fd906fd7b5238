"""The webhook delivery worker: sends due outbox rows, records every attempt.

Each take claims the due deliveries (a conditional UPDATE per row, so several processes can
share the work), writing for each the intent of an attempt before the request is sent and
pushing its due time past the request's timeout; after the request it writes the outcome.
A crash in between leaves the attempt unfinished in the log and the delivery due again once
its lease runs out: an event may then reach a receiver twice (same `id`), never zero times.
A stop first lets the requests out be answered, for up to STOP_GRACE_SECONDS (`wind_down`),
so that a receiver that answers meanwhile is not sent the event again; it gives the leases
of the requests it then cuts off back (`release_leases`): those deliveries are due again at
once, not a lease later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta

import aiohttp

from smsgw import metrics
from smsgw.config import Settings, WebhooksMode
from smsgw.db.engine import Database, UnitConnection, delete_in_batches
from smsgw.domain import clock
from smsgw.inbox import exports
from smsgw.logs import service as logs
from smsgw.webhooks import guard, repository, sender
from smsgw.webhooks.repository import Due
from smsgw.webhooks.service import signing_key_of

log = logging.getLogger("smsgw.webhooks")
#: A taken delivery is due again this long after twice the request timeout (a crash). The
#: margin covers writing the outcome, which may wait for the write lock: with several nodes
#: on PostgreSQL, for the others' writes too; past the lease another node would send again.
LEASE_MARGIN_SECONDS = 15
#: The error of an attempt whose request a stop cut off.
STOPPED = "smsgw stopped before the answer; sent again"
#: How long a stop lets the requests out be answered (`wind_down`) before it cuts them off,
#: counted from the moment the server is told to stop (`finish`), so that it runs beside
#: the up to 5 s uvicorn gives the connections rather than after them.
STOP_GRACE_SECONDS = 3.0
PRUNE_EVERY_SECONDS = 3600
EXPIRE_EVERY_SECONDS = 60


async def _log_failure(
    conn: UnitConnection, item: Due, error: str | None, plan: sender.Plan
) -> None:
    """A failed attempt in the owner's event log: a warning while it will be retried, an
    error once the delivery is given up or the webhook disabled."""
    retried = plan.state == repository.PENDING
    what = "will be retried" if retried else f"given up ({plan.disable_reason or plan.state})"
    await logs.record_unit(
        conn,
        item.user_id,
        logs.Module.WEBHOOKS,
        logs.Priority.WARN if retried else logs.Priority.ERROR,
        f"webhook {item.webhook_id}: {item.event} delivery failed ({error}); {what}",
        {"webhookId": item.webhook_id, "event": item.event, "eventId": item.event_id,
         "attempt": item.attempts + 1},
    )  # fmt: skip


class WebhookWorker:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.wakeup = asyncio.Event()
        self._last_prune = self._last_settle = 0.0
        self._last_expiry = -float(EXPIRE_EVERY_SECONDS)
        self._export_failures: dict[int, int] = {}
        #: The attempts taken and not yet settled: attempt -> (delivery, its lease's end).
        self._in_flight: dict[int, tuple[int, datetime]] = {}
        #: Set by `finish`: no look begins and no delivery is taken any more; since when
        #: (time.monotonic()). `run`'s own task.
        self._finishing = False
        self._finish_began = 0.0
        self._task: asyncio.Task[None] | None = None
        #: The session of the requests, made at the first (in the running event loop).
        self._client: aiohttp.ClientSession | None = None

    @property
    def _guarded(self) -> bool:
        return not self.settings.webhooks_allow_private_urls

    def client(self) -> aiohttp.ClientSession:
        """The session webhook requests go through (guard.session), made at the first."""
        if self._client is None:
            timeout = self.settings.webhooks_timeout_seconds
            self._client = guard.session(not self._guarded, timeout)
        return self._client

    async def close(self) -> None:
        """Close the session of the requests (when one was made)."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def poke(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self.wakeup.set()

    async def take(self, limit: int | None = None) -> list[tuple[Due, int, str]]:
        """Claim due deliveries: (delivery, attempt row, signing key) for each.

        No more than `limit` (as many as may be in flight at once unless given), so every
        lease starts when its request does.
        """
        limit = self.settings.webhooks_concurrency if limit is None else limit
        now = clock.now()
        # Look first: most looks find nothing, and a read costs less than a write.
        if not await self.db.read_unit(lambda conn: repository.due_unit(conn, now, 1)):
            return []

        async def unit(conn: UnitConnection) -> tuple[datetime, list[tuple[Due, int, str]]]:
            taken: list[tuple[Due, int, str]] = []
            # Counted from now, after any wait for the write lock (another server process
            # may hold it): the request must end within the lease (see deliver).
            now = clock.now()
            lease = now + timedelta(
                seconds=2 * self.settings.webhooks_timeout_seconds + LEASE_MARGIN_SECONDS
            )
            if self._finishing:  # the stop began since the look (while this unit queued)
                return lease, taken
            keys: dict[int, str] = {}  # one look-up per owner and take, not per delivery
            for item in await repository.due_unit(conn, now, limit, taking=True):
                if await repository.take_unit(conn, item, lease, now):
                    attempt = await repository.start_attempt_unit(conn, item, now)
                    if item.user_id not in keys:
                        keys[item.user_id] = await signing_key_of(conn, item.user_id)
                    taken.append((item, attempt, keys[item.user_id]))
            return lease, taken

        # A unit of work: it shares its commit with the outcomes written meanwhile.
        lease, taken = await self.db.write_unit(unit)
        # In flight once the take has committed (release_leases gives them back at a stop).
        self._in_flight.update((attempt, (item.pk, lease)) for item, attempt, _ in taken)
        return taken

    async def deliver(self, item: Due, attempt: int, key: str) -> None:
        """One request and its outcome written. Cut off by a stop (cancelled), the attempt
        stays in flight for release_leases; a failure leaves its lease to run out."""
        try:
            await self._deliver(item, attempt, key)
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._in_flight.pop(attempt, None)
            raise
        self._in_flight.pop(attempt, None)

    async def _deliver(self, item: Due, attempt: int, key: str) -> None:
        max_bytes = self.settings.webhooks_max_response_bytes
        # Within the lease (take): past it, another process may take the delivery again.
        deadline = 2 * self.settings.webhooks_timeout_seconds
        outcome = await sender.post(self.client(), item, key, max_bytes, deadline, self._guarded)
        now = clock.now()
        plan = sender.plan(self.settings, item, outcome, now)
        finished = (now, outcome.status, outcome.duration_ms, outcome.error)

        async def unit(conn: UnitConnection) -> None:
            await repository.outcome_unit(
                conn, attempt, finished, item.pk, plan.state, plan.next_at
            )
            if plan.disable_reason is not None:
                await repository.disable_unit(conn, item.webhook_pk, plan.disable_reason, now)
            if plan.state != repository.DELIVERED:
                await _log_failure(conn, item, outcome.error, plan)

        # A unit of work: the outcomes of requests answered together share one commit (and
        # on PostgreSQL do not wait for other nodes' writes).
        await self.db.write_unit(unit)
        metrics.webhook_delivery(item.event, plan.state == repository.DELIVERED)
        if plan.state != repository.DELIVERED:
            log.info("webhook %s: %s -> %s", item.webhook_id, outcome.error, plan.state)

    def finish(self) -> None:
        """The server is told to stop: no look begins and no delivery is taken any more;
        the requests out may still be answered (`wind_down`)."""
        if not self._finishing:
            self._finishing, self._finish_began = True, time.monotonic()
            self.wakeup.set()

    async def wind_down(self, grace: float | None = None) -> None:
        """At a stop, before `run`'s task is cancelled: `finish`, then let the requests
        out be answered and their outcomes written, until `grace` seconds
        (STOP_GRACE_SECONDS unless given) after `finish` was first called. Returns as soon
        as `run` has ended."""
        self.finish()
        grace = STOP_GRACE_SECONDS if grace is None else grace
        left = self._finish_began + grace - time.monotonic()
        if self._task is not None and not self._task.done() and left > 0:
            await asyncio.wait([self._task], timeout=left)

    async def release_leases(self) -> int:
        """Once the worker's task has been cancelled (a stop): the deliveries whose requests
        it cut off are due again at once, their attempts finished as `STOPPED`, rather than
        waiting out their leases after a restart. A delivery whose outcome was written
        meanwhile is left alone (`repository.release` checks the lease). How many went back;
        a failure is logged, never raised (the stop goes on; the leases then run out)."""
        leases, self._in_flight = self._in_flight, {}
        if not leases:
            return 0
        now = clock.now()
        released = 0
        try:
            async with self.db.write() as conn:
                for attempt, (delivery, lease) in leases.items():
                    released += await repository.release(
                        conn, delivery, lease, attempt, now, STOPPED
                    )
        except Exception:
            log.exception("could not give back %d webhook deliveries in flight", len(leases))
            return 0
        return released

    async def _settle_exports_logged(self) -> int:
        """`settle_exports`; a failure is logged, and tried again at the next look."""
        try:
            return await self.settle_exports()
        except Exception as error:  # exports must never hold up the deliveries
            log.error("inbox exports: settling failed (%s); retried next round",
                      type(error).__name__)  # fmt: skip
            return 0

    async def settle_exports(self) -> int:
        """Inbox exports whose replay went quiet: closed, with their events in the outbox
        (in hub mode; in direct mode the phones deliver to the users themselves)."""
        settings, now = self.settings, time.monotonic()
        if now - self._last_expiry >= EXPIRE_EVERY_SECONDS:
            self._last_expiry = now
            await exports.expire(self.db, settings.inbox_export_max_age_seconds)
        if now - self._last_settle < min(1.0, settings.inbox_export_settle_seconds / 4):
            return 0
        self._last_settle = now
        hub = settings.webhooks_mode == WebhooksMode.HUB
        return await exports.settle(
            self.db, settings.inbox_export_settle_seconds, hub, self._export_failures
        )

    async def prune(self) -> int:
        """Hourly: forget webhook events (with their deliveries and delivery log) and inbox
        exports no longer open, after twice the webhooks' maximum age (no delivery is
        pending then), or after SMSGW_RETENTION_DAYS when that is sooner, the events then
        only once none of their deliveries is pending; in small batches, then give the space
        back. How many events and exports went."""
        if time.monotonic() - self._last_prune < PRUNE_EVERY_SECONDS:
            return 0
        self._last_prune = time.monotonic()
        now = clock.now()
        before = now - timedelta(seconds=2 * self.settings.webhooks_max_age_seconds)
        settled_before = None
        if self.settings.retention_days is not None:
            cutoff = now - timedelta(days=self.settings.retention_days)
            settled_before = cutoff if cutoff > before else None
        gone = await delete_in_batches(
            self.db,
            lambda conn: repository.any_old(conn, before, settled_before),
            lambda conn, batch: repository.delete_old(conn, before, settled_before, batch),
        )
        gone += await exports.prune(self.db, settled_before or before)
        if gone:
            await self.db.reclaim_space()
        return gone

    async def run(self) -> None:
        """Deliver until told to stop (`finish`), with up to `webhooks_concurrency` requests
        out at once: slots are taken again as soon as half of them are free (their requests
        ended, their outcomes written), or any free slot a poll after the last look, not once
        the slowest request of a round has ended. Once told to stop, the requests out end
        first (`wind_down`); cancelled, they are cut off with it."""
        self._task = asyncio.current_task()
        out: set[asyncio.Task[None]] = set()
        poll, looked = self.settings.webhooks_poll_seconds, -float("inf")
        try:
            while not self._finishing:
                self.wakeup.clear()  # before the look: a poke from now on is seen
                concurrency = self.settings.webhooks_concurrency
                free = concurrency - len(out)
                # Taken once half the slots are free (a take per request would cost more),
                # or a slot a poll after the last look (slow receivers holding half).
                looks = free >= max(concurrency // 2, 1) or (
                    free > 0 and time.monotonic() - looked >= poll
                )
                busy = True
                if looks:
                    looked = time.monotonic()
                    busy = await self._start(out, free) == free
                if self._finishing:
                    break
                if busy:  # wait for a request to end, or (a slot free) the next poll
                    timeout = poll if len(out) < concurrency else None
                    await asyncio.wait(out, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                else:  # nothing more is due
                    await self._idle(out)
                self._reap(out)
            if out:  # the stop began: the requests out may still be answered
                await asyncio.wait(out)
                self._reap(out)
        finally:
            for task in out:  # cut off (the stop's grace is over): release_leases follows
                task.cancel()
            if out:
                await asyncio.gather(*out, return_exceptions=True)
            await self.close()

    async def _start(self, out: set[asyncio.Task[None]], free: int) -> int:
        """Settle the inbox exports due, take up to `free` deliveries and start their
        requests as tasks in `out`, then prune when that is due; how many were taken. A
        failure is logged (the next look tries again)."""
        await self._settle_exports_logged()
        try:
            taken = await self.take(free)
        except Exception:
            log.exception("webhook round failed; retrying next round")
            return 0
        # Out at once: each lease runs from its take (and a failing prune below must not
        # leave them taken and never sent until their leases end).
        for job in taken:
            out.add(asyncio.create_task(self.deliver(*job), name="smsgw-webhook-delivery"))
        if not self._finishing:
            try:
                await self.prune()
            except Exception:
                log.exception("webhook pruning failed; retried in an hour")
        return len(taken)

    async def _idle(self, out: set[asyncio.Task[None]]) -> None:
        """Until a request ends, a poke (new events) or the poll (retries come due)."""
        waker = asyncio.ensure_future(self.wakeup.wait())
        try:
            await asyncio.wait(
                {*out, waker},
                timeout=self.settings.webhooks_poll_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            waker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waker

    @staticmethod
    def _reap(out: set[asyncio.Task[None]]) -> None:
        """Forget the requests that ended; a failure to write an outcome is logged (the
        delivery's lease then runs out and it is sent again)."""
        for task in [task for task in out if task.done()]:
            out.discard(task)
            if not task.cancelled() and (error := task.exception()) is not None:
                log.error("webhook delivery failed; due again once its lease ends",
                          exc_info=error)  # fmt: skip
