"""The worker of one link: its SMPP session, kept bound, and the parts it submits.

It binds (transceiver, or a transmitter and a receiver: the link's bind mode, one session for
it all the same: links/session.py) and rebinds after a lost session with exponential backoff
and jitter;
claims the owner's queued messages as a phone pulls them (links/service.py `claim`); submits
their parts with at most `window` submit_sm awaiting an answer and at most `throughput` per
second (a token bucket); records each answer and receipt and reports the recipients' states
through the phones' report path; takes MO messages into the inbox; slows down when the
carrier says it is busy; unbinds when the server stops. docs/links.md states the rules.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from smsgw import metrics
from smsgw.db.engine import Database
from smsgw.domain import clock
from smsgw.events import signals
from smsgw.events.signals import Signals
from smsgw.links import repository, service
from smsgw.links.encoding import Encoded, encode, encode_data
from smsgw.links.receipts import PASSING, Receipt, is_receipt, parse
from smsgw.links.repository import LinkRecord, PartJob
from smsgw.links.session import (
    Answer,
    BindFailed,
    Inbound,
    Session,
    Submit,
    smpp_time,
    status_text,
)
from smsgw.routing.repository import ONLINE_WINDOW
from smsgw.webhooks.hub import OptOutWords

log = logging.getLogger("smsgw.links")
#: A receipt whose part is not known yet is tried again for this long (its submit_sm's
#: answer may still be on its way to the database), then dropped with a warning.
ORPHAN_SECONDS = 60.0
#: When such a receipt is tried again: this long after it came, then each time it has
#: waited twice as long as at its last try (2, 4, 8, 16, 32 s), and at ORPHAN_SECONDS. Not
#: with every recording of answers (every few milliseconds on a busy link), since with an
#: SMSC that spells the receipts' ids otherwise (LOOSE_SECONDS) every receipt waits here a
#: second or two; and not every second for a minute, for a carrier whose receipts name
#: nothing of ours.
ORPHAN_EVERY_SECONDS = 1.0
#: A receipt whose id names no part of the link as spelled is matched by its other
#: spellings (repository.spellings: letter case, leading zeros, hex or decimal) only once
#: it has waited this long: had it come before its own part's answer was recorded, that
#: answer is recorded by then, and the receipt is not taken by another part. The same
#: number in the other base is tried until the link's receipts show that the carrier
#: spells them in the base of its answers (`LinkRunner.same_base`).
LOOSE_SECONDS = 1.0
#: Receipts of all-digit ids (two significant digits or more) found as spelled, none in the
#: other base, that show a carrier spells its receipts' ids in its answers' base.
SAME_BASE_AFTER = 20
#: How long a stopping link waits for the answers of its submit_sm in flight.
DRAIN_SECONDS = 5.0
#: The first pause after a busy answer (throttled, queue full); it doubles up to the last.
BUSY_FIRST, BUSY_LONGEST = 0.5, 30.0
RECONNECT_FIRST = 0.5
#: A session that stays bound this long, or on which the carrier accepts a submit_sm, held:
#: the reconnect backoff starts again from its first step. One that ends sooner counts as a
#: failed attempt, so that a carrier that accepts the bind and drops the connection at once
#: (a limit on binds, a policy) is not bound again every half second, which may get the
#: account blocked.
HELD_SECONDS = 30.0
#: The most messages a fast link claims at once (SMSGW_CLAIM_CAP's own upper bound).
CLAIM_MOST = 100
#: How long the recorder waits after an answer or a receipt before recording, so that
#: those that follow share its transaction (fewer commits, the write lock held less often:
#: another process's API gets it sooner). The window does not wait for it.
GATHER_SECONDS = 0.01
#: Parts intended ahead of the window: as many as the link's throughput sends in this long,
#: at least a window and at most AHEAD_WINDOWS windows (`intended_ahead`).
AHEAD_SECONDS = 0.03
AHEAD_WINDOWS = 3
#: A runner submits only while its lease on the link (as of its last renewal) has at least
#: this much left by the process's own clock: the clock of a process that may take the link
#: over once the lease has run out may be ahead (docs/links.md, "Durability").
LEASE_MARGIN = timedelta(seconds=5)


def intended_ahead(window: int, throughput: int) -> int:
    """How many parts a link may have intended and not submitted: enough to keep its window
    fed while an intent's commit waits behind another batch of the group commit (a claim of
    100 messages holds SQLite's writer for over 10 ms), at least a window. A process that
    dies without stopping fails these too as "not resent" (docs/links.md, "Durability")."""
    wanted = math.ceil(throughput * AHEAD_SECONDS)
    return max(window, min(AHEAD_WINDOWS * window, wanted))


@dataclass(frozen=True)
class LinkOptions:
    """How every link runs (config.py: SMSGW_LINK_*), and what MO texts opt out of."""

    connect_timeout: float
    reconnect_longest: float
    claim_cap: int
    poll: float
    opt_outs: OptOutWords
    #: SMSGW_ONLINE_WINDOW_SECONDS: a phone heard from within it is online (routing rules).
    online_window: timedelta = ONLINE_WINDOW


class TokenBucket:
    """At most `rate` tokens a second, in bursts of at most a tenth of that (at least 1)."""

    def __init__(self, rate: int) -> None:
        self.rate = float(rate)
        self.capacity = max(1.0, self.rate / 10)
        self.tokens = self.capacity
        self.at = time.monotonic()

    async def take(self, wanted: int) -> int:
        """Take between 1 and `wanted` tokens, waiting for the first one."""
        while True:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                taken = min(wanted, int(self.tokens))
                self.tokens -= taken
                return taken
            await asyncio.sleep((1 - self.tokens) / self.rate)


class Slowdown:
    """The pause after busy answers (docs/links.md, "Throttling"): no submit_sm goes out
    while it lasts. BUSY_FIRST, doubling each time the carrier is busy again after a pause,
    up to BUSY_LONGEST; an accepted answer ends it and the next starts from BUSY_FIRST again.
    The busy answers to the submit_sm out when a pause began (a window throttled together)
    are of that pause: they neither double it nor make it longer."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.delay = BUSY_FIRST
        #: When the pause in force ends; 0 once none is (the sender's check reads no clock).
        self.until = 0.0
        #: Pauses begun: a submit_sm goes out with the count of its time (`busy`'s `since`).
        self.pauses = 0

    def busy(self, since: int | None = None) -> None:
        """A busy answer (or an intent that could not be recorded: `since` None) to a
        submit_sm that went out when `pauses` was `since`."""
        if since is not None and since != self.pauses:
            return  # out before the last pause began: that pause was its answer
        now = self.clock()
        if now < self.until:
            return  # a pause in force already
        self.until = now + self.delay
        self.delay = min(BUSY_LONGEST, self.delay * 2)
        self.pauses += 1

    def accepted(self) -> None:
        self.delay = BUSY_FIRST
        self.until = 0.0

    def left(self) -> float:
        """The seconds the pause in force has left (0: none is)."""
        if not self.until:
            return 0.0
        left = self.until - self.clock()
        if left <= 0:
            self.until = 0.0
            return 0.0
        return left


def backoff(attempt: int, longest: float) -> float:
    """The pause before reconnect `attempt` (from 1): exponential, with full jitter over its
    upper half, so that links of one carrier do not reconnect in step."""
    delay = min(longest, RECONNECT_FIRST * 2 ** (attempt - 1))
    return random.uniform(delay / 2, delay)


class Reconnects:
    """The pauses between binds (`backoff`), counted from the last session that held
    (HELD_SECONDS)."""

    def __init__(self, longest: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.longest, self.clock = longest, clock
        #: Attempts since the last session that held (failed binds, sessions that ended
        #: too soon).
        self.attempt = 0
        self.bound_at = 0.0
        #: The carrier accepted a submit_sm on the session bound last (set by the runner).
        self.carried = False

    def bound(self) -> None:
        self.bound_at = self.clock()
        self.carried = False

    def ended(self, unanswered: bool = False) -> None:
        """The session bound last ended: the next pause is the first step if it held. One
        that ended because a submit_sm went unanswered held only if the carrier accepted
        one: smpp34 waits 30 s for an answer, so a carrier that binds and never answers
        made every session last HELD_SECONDS, and was bound again at once each time."""
        long_enough = not unanswered and self.clock() - self.bound_at >= HELD_SECONDS
        if self.carried or long_enough:
            self.attempt = 0

    def pause(self) -> float:
        """The pause before the next bind (after a failed bind, or a session's end)."""
        self.attempt += 1
        return backoff(self.attempt, self.longest)


def _refused(error: BaseException) -> bool:
    """Whether the database refused a statement for its values (DB-API's DataError or
    IntegrityError, from any driver, as is or wrapped by SQLAlchemy), or Python did before
    it ran: not whether the database is there."""
    if isinstance(error, ValueError | OverflowError):  # (UnicodeError is a ValueError)
        return True
    for kind in (type(error), type(getattr(error, "orig", None))):
        if any(c.__name__ in ("DataError", "IntegrityError") for c in kind.__mro__):
            return True
    return False


def _answer_label(answer: Answer) -> str:
    """The SMSC's answer to a submit_sm as /metrics counts it."""
    if answer.status is None:
        return "none"
    if answer.status == 0:
        return "accepted"
    return "busy" if answer.busy else "refused"


class LinkRunner:
    def __init__(
        self,
        db: Database,
        link: LinkRecord,
        options: LinkOptions,
        signals: Signals,
        driver: str,
        lease_until: datetime,
    ) -> None:
        """`driver`: the process's name in the links' leases (workers/links.py), whose lease
        on the link every intent requires; `lease_until`: when that lease runs out (each
        round of the supervisor tells the runner its renewal: `leased`)."""
        self.db, self.link, self.options, self.signals = db, link, options, signals
        self.driver = driver
        #: Submit_sm go out only before this (the lease's end, less LEASE_MARGIN).
        self.submit_until = lease_until - LEASE_MARGIN
        #: Free places in the window (submit_sm that may go out without awaiting an answer).
        self.free = link.window
        self.bucket = TokenBucket(link.throughput)
        self.slowdown = Slowdown()
        self.reconnects = Reconnects(options.reconnect_longest)
        #: Parts planned, their intent not recorded yet.
        self.backlog: deque[PartJob] = deque()
        #: Parts whose intent is committed, waiting for a place in the window (at most
        #: `ahead`, with those whose intent is committing: `intending`).
        self.ready: deque[PartJob] = deque()
        self.intending = 0
        #: How many parts may be intended ahead of the window: the intent's commit then
        #: overlaps the answers awaited, instead of holding a place in the window.
        self.ahead = intended_ahead(link.window, link.throughput)
        #: The fewest parts an intent takes while others are ready or being intended.
        self.intend_batch = max(1, link.window // 2)
        #: Parts in the backlog, ready, or awaiting their answer.
        self.queued: set[int] = set()
        self.flying: set[asyncio.Task[None]] = set()
        #: submit_sm sent (or being sent) whose answer has not come.
        self.awaiting = 0
        #: The claim and read of more parts, while it runs.
        self.refill: asyncio.Task[None] | None = None
        #: A refill is due without a poke: the session's first, after one that found work,
        #: and after `poll` seconds idle.
        self._due = True
        #: Intents being committed (`_intend` tasks).
        self.intents: set[asyncio.Task[None]] = set()
        self.answers: list[service.Outcome] = []
        self.receipts: list[tuple[float, Receipt]] = []
        #: Receipts that matched no part: (when each came, when it is tried again, it).
        self.orphans: list[tuple[float, float, Receipt]] = []
        #: The clock of receipts' waits (a test's own).
        self.monotonic: Callable[[], float] = time.monotonic
        #: Whether the carrier spells its receipts' ids in the base of its answers (None:
        #: not known yet). Yes once a receipt found its part as spelled by an id with a hex
        #: letter, or SAME_BASE_AFTER by ids of digits (two significant ones or more), before
        #: any found its part in the other base; no once one did, before that. Then a receipt
        #: that does not match is never matched by the same number in the other base, which
        #: is another part's id as often as not (20 read as hex is 32, 0x10 read as decimal
        #: 10). A chance match of another part as spelled must not decide it for a carrier
        #: that answers in one base and spells receipts in the other: its receipts find
        #: their parts in the other base from the first, and one such decides it.
        self.same_base: bool | None = None
        self.as_spelled = 0
        self._encoded: tuple[int, Encoded] | None = None
        #: A link for all accounts: the account its next claim starts from.
        self.next_account = 0
        self._poke = asyncio.Event()
        #: Set on anything the sender may wait for: a free place in the window, an intent
        #: committed (or failed), a poke, the session's end, the link stopping (one event
        #: rather than a future for each of them at every wait: a full window waits often).
        self._wake = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._stopping = asyncio.Event()
        low = 2 * link.window
        self.low_water, self.load = low, max(4 * link.window, 100)
        #: Messages one claim takes at most: SMSGW_CLAIM_CAP, or a tenth of a second of the
        #: link's throughput when more (up to CLAIM_MOST): a fast link claiming 10 at a time
        #: spends a commit per 10 messages, and its claims, not the SMSC, set its pace.
        self.claim_cap = max(options.claim_cap, min(CLAIM_MOST, link.throughput // 10))

    def leased(self, until: datetime) -> None:
        """The supervisor's round: the link's lease is this process's until `until`."""
        if until - LEASE_MARGIN != self.submit_until:
            self.submit_until = until - LEASE_MARGIN
            self._wake.set()  # a sender waiting for the renewal (`_until_leased`)

    def _leased(self) -> bool:
        """Whether the lease, as of its last renewal, still lasts long enough by this
        process's clock to submit (a process paused past it may have lost the link: another
        then fails the parts intended here as "not resent", and they must not go out)."""
        return clock.now() < self.submit_until

    def poke(self) -> None:
        """Work may wait (a message of the owner was queued): look now."""
        self._poke.set()
        self._wake.set()

    async def stop(self) -> None:
        """Stop sending, wait for the answers in flight, unbind (run() then returns)."""
        if self.awaiting:  # parts at risk (docs/links.md): worth a line in the log
            log.warning("link %s: stopping with %d submit_sm awaiting their answer; waiting up "
                        "to %g s for them", self.link.device_id, self.awaiting,
                        DRAIN_SECONDS)  # fmt: skip
        self._stopping.set()
        self._poke.set()
        self._wake.set()

    async def run(self) -> None:
        flusher = asyncio.create_task(
            self._flush_loop(), name=f"smsgw-link-flush-{self.link.device_id}"
        )
        try:
            self._emitted(await service.recover(self.db, self.link))
            await self._sessions()
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await self._flush(final=True)

    async def _sessions(self) -> None:
        where = f"{self.link.host}:{self.link.port}"
        while not self._stopping.is_set():
            session = Session(self.link, self.options.connect_timeout)
            await self._state("connecting", f"binding to {where}")
            try:
                await session.open()
            except BindFailed as error:
                log.warning("link %s: %s", self.link.device_id, error)
                await self._state("down", str(error))
            else:
                log.info("link %s: bound to %s", self.link.device_id, where)
                self.reconnects.bound()
                try:
                    await self._state("bound", None)
                    await self._serve(session)
                finally:
                    # (its length: not the writes that follow)
                    self.reconnects.ended(session.unanswered)
                    await session.close()
                if self._stopping.is_set():
                    await self._state("down", "stopped (unbound)")
                    return
                why = f"{session.lost} with {where} ended"
                if session.unanswered:
                    why += " after a submit_sm went unanswered"
                log.warning("link %s: %s", self.link.device_id, why)
                await self._state("down", f"{why}; reconnecting")
            with contextlib.suppress(TimeoutError):
                pause = self.reconnects.pause()
                await asyncio.wait_for(self._stopping.wait(), pause)

    async def _state(self, state: str, detail: str | None) -> None:
        await service.set_state(self.db, self.link, state, detail)

    def _emitted(self, events: int) -> None:
        if events:
            self.signals.emit(signals.OUTBOX_FILLED)

    # Sending.

    async def _serve(self, session: Session) -> None:
        reader = asyncio.create_task(self._read(session))
        ended = asyncio.create_task(session.ended.wait())
        ended.add_done_callback(lambda _: self.poke())  # an idle sender looks at once
        try:
            await self._send(session, reader)
        finally:
            ended.cancel()
            # Their answers, or the errors of a session that ended (for DRAIN_SECONDS);
            # intents committing are waited for to the end (a write, not the carrier), so
            # that what they make ready is taken back with the rest.
            deadline = time.monotonic() + DRAIN_SECONDS
            while self.flying and (left := deadline - time.monotonic()) > 0:
                await asyncio.wait(list(self.flying), timeout=left)
            while self.intents:
                await asyncio.wait(list(self.intents))
            if self.refill is not None:  # a claim, then its parts read: a write, to its end
                await asyncio.wait([self.refill])
                try:
                    self._refilling()
                except Exception:
                    log.exception("link %s: claiming failed", self.link.device_id)
            await self._unready()
            # Unbind what is still bound (when stopping; in mode tx_rx, the bind left when
            # the other ended): the reader takes what it still delivered, then sees the end.
            await session.close()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    def _over(self, session: Session, reader: asyncio.Task[None]) -> bool:
        return self._over_now(session) or reader.done()

    def _waiting(self) -> int:
        """Parts this runner holds that are not submitted yet."""
        return len(self.backlog) + self.intending + len(self.ready)

    async def _send(self, session: Session, reader: asyncio.Task[None]) -> None:
        fresh = self._due = True
        while not self._over(session, reader):
            due = self._due or self._poke.is_set()
            if self._waiting() < self.low_water and due and not self._refilling():
                self._due = False
                # In a task of its own: the parts ready meanwhile go out while it claims.
                self.refill = asyncio.create_task(self._refill(claim_anyway=fresh))
                self.refill.add_done_callback(lambda _: self._wake.set())
                fresh = False
            await self._pause(session)  # a busy carrier, or a failed intent: a pause first
            if not self._leased() and not self._over(session, reader):
                await self._until_leased(session, reader)
                continue
            if not self._over_now(session):
                self._prepare()
            if not self.ready:
                if not self._waiting():
                    # (a poke during the refill is still set: look again at once)
                    self._wake.clear()
                    if self._due and not self._refilling():
                        continue  # (a refill that claimed but planned nothing: look again)
                    if not self._refilling():
                        try:
                            await asyncio.wait_for(self._poke.wait(), self.options.poll)
                        except TimeoutError:
                            self._due = True  # look now and then all the same
                    elif not self._over_now(session):
                        await self._wake.wait()  # the refill's end
                    continue
                await self._until_ready(session)
                continue
            await self._submit_some(session)

    async def _pause(self, session: Session) -> None:
        """Wait out the slowdown's pause in force (none: return at once), or until an
        accepted answer ends it, the session ends or the link stops."""
        while (left := self.slowdown.left()) > 0 and not self._over_now(session):
            self._wake.clear()  # (set by every answer: an accepted one ends the pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    def _prepare(self) -> None:
        """Record the intent of the next parts of the backlog, up to `ahead` parts intended
        and not submitted, in a task of its own (its commit overlaps the answers awaited);
        at least `intend_batch` parts unless none is ready or being intended."""
        room = self.ahead - self.intending - len(self.ready)
        if room <= 0 or not self.backlog or not self._leased():
            return
        if room < self.intend_batch and (self.ready or self.intending):
            return  # enough to submit meanwhile: a larger batch in a moment, fewer commits
        jobs = [self.backlog.popleft() for _ in range(min(room, len(self.backlog)))]
        self.intending += len(jobs)
        task = asyncio.create_task(self._intend(jobs))
        self.intents.add(task)
        task.add_done_callback(self.intents.discard)

    async def _intend(self, jobs: list[PartJob]) -> None:
        """The batch's intent committed, then ready to submit; if it could not be recorded,
        the parts wait first in line again. A part the intent did not take (no longer
        planned on the link: deleted with it, or cancelled; or the link's lease is no
        longer this process's) leaves the runner's hands unsent."""
        try:
            taken = await service.intend(self.db, self.link, self.driver, [j.id for j in jobs])
        except BaseException as error:
            self.backlog.extendleft(reversed(jobs))
            if not isinstance(error, Exception):
                raise
            log.exception(
                "link %s: recording submit_sm intents failed; retrying", self.link.device_id
            )
            self.slowdown.busy()  # a pause before the next try
        else:
            if len(taken) == len(jobs):
                self.ready.extend(jobs)
            else:
                self._drop([job for job in jobs if job.id not in taken])
                self.ready.extend(job for job in jobs if job.id in taken)
        finally:
            self.intending -= len(jobs)
            self._wake.set()

    def _drop(self, jobs: list[PartJob]) -> None:
        """Parts their intent did not take (`_intend`): not sent. Those still planned come
        back with a later refill, if the lease is still this process's."""
        for job in jobs:
            self.queued.discard(job.id)
        log.info("link %s: %d part(s) no longer planned on the link (deleted, or their "
                 "message cancelled) or its lease lost; not sent", self.link.device_id,
                 len(jobs))  # fmt: skip

    async def _until_leased(self, session: Session, reader: asyncio.Task[None]) -> None:
        """Wait until the supervisor's round renews the lease (`leased`), the session ends
        or the link stops; the parts already intended stay so, unsent (should another
        process have taken the link over, it fails them as "not resent"; if not, they go
        once the lease is renewed)."""
        log.warning("link %s: its lease runs out in under %g s and was not renewed; no "
                    "submit_sm until it is", self.link.device_id,
                    LEASE_MARGIN.total_seconds())  # fmt: skip
        while not self._leased() and not self._over(session, reader):
            self._wake.clear()
            await self._wake.wait()

    async def _until_ready(self, session: Session) -> None:
        """Wait until an intent commits (or fails), or the session ends, or the link stops
        (or anything else wakes the sender)."""
        self._wake.clear()
        if self.ready or not self.intending or self._over_now(session):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.options.poll)

    def _over_now(self, session: Session) -> bool:
        """No more submit_sm on this session: the link is stopping, the session is over, or
        a submit_sm on it went unanswered (a lost connection fails those in flight before
        the session sees its end: the parts intended next must not go out on it)."""
        return self._stopping.is_set() or session.dead or session.unanswered

    async def _unready(self) -> None:
        """After a session: the parts intended and never submitted are planned again (their
        intent taken back), so that a restart does not take them for sent."""
        if not self.ready:
            return
        jobs = list(self.ready)
        try:
            await service.unintend(self.db, [job.id for job in jobs])
        except Exception:  # kept ready: their intent stands, the next session submits them
            log.exception("link %s: taking back unsent intents failed", self.link.device_id)
            return
        for _ in jobs:  # (nothing else takes from it meanwhile)
            self.ready.popleft()
        self.backlog.extendleft(reversed(jobs))

    def _refilling(self) -> bool:
        """Whether a refill runs (one that ended is done with: its error raised here)."""
        if self.refill is None:
            return False
        if not self.refill.done():
            return True
        ended, self.refill = self.refill, None
        ended.result()  # (a failed claim ends the session's sending, as it did inline)
        return False

    async def _refill(self, claim_anyway: bool) -> None:
        self._poke.clear()  # what is queued from now on pokes again
        window, cap = self.options.online_window, self.claim_cap
        found = False
        if claim_anyway or await service.may_claim(self.db, self.link, window):
            claimed = await service.claim(self.db, self.link, cap, window, self.next_account)
            self.next_account = claimed.next_account  # a link for all accounts: whose turn
            self._emitted(claimed.events)
            found = claimed.claimed > 0
        for job in await service.unsent(self.db, self.link, self.load + len(self.queued)):
            if job.id not in self.queued:
                self.queued.add(job.id)
                self.backlog.append(job)
                found = True
        if found:  # more may wait: the next refill need not wait for a poke
            self._due = True

    async def _submit_some(self, session: Session) -> None:
        """Submit as many parts as the window and the token bucket allow now (at least one),
        each recorded as submitted first; none once the link is stopping."""
        if not await self._slot(session):
            return
        # Only this task takes places and ready parts: both can only grow meanwhile.
        taken = await self.bucket.take(min(self.free, len(self.ready)))
        # While waiting for the tokens: the session ended, a busy answer came (the tokens
        # are forgone, a tenth of a second's worth at most: the pause is longer), or the
        # lease ran short (each submit_sm checks it again).
        if self._over_now(session) or self.slowdown.until or not self._leased():
            return
        jobs = [self.ready.popleft() for _ in range(min(taken, len(self.ready)))]
        self.free -= len(jobs)
        since = self.slowdown.pauses
        for job in jobs:
            self._fly(self._submit(session, job, since))

    def _fly(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.flying.add(task)
        task.add_done_callback(self.flying.discard)

    async def _slot(self, session: Session) -> bool:
        """Wait for a place in the window (True: at least one is free); False once the link
        is stopping or the session is over, which a full window must not hold up (its
        answers may never come; in mode tx_rx the transmitter may outlive the receiver),
        and when poked while the backlog is low (a message was queued: the caller claims it
        meanwhile, rather than once the carrier answers). While it waits, the parts planned
        are intended ahead as the sender's loop would (`_prepare`). A place free during a
        pause of the slowdown waits for its end (a busy answer frees its place at once)."""
        while True:
            if self._over_now(session):
                return False
            if self.free > 0:
                if not self.slowdown.until:
                    return True
                await self._pause(session)
                continue
            if self._poke.is_set() and self._waiting() < self.low_water and not self._refilling():
                return False
            # Parts a refill planned meanwhile get their intent now, not once a place frees
            # (the window would then wait for that commit).
            self._prepare()
            self._wake.clear()
            await self._wake.wait()

    def _encode(self, job: PartJob) -> Encoded:
        if self._encoded is None or self._encoded[0] != job.message_id:
            if job.data is not None and job.port is not None:  # checked when claimed
                encoded = encode_data(base64.b64decode(job.data), job.port)
            else:
                encoded = encode(job.text, job.message_id, self.link.data_coding)
            self._encoded = (job.message_id, encoded)
        return self._encoded[1]

    async def _submit(self, session: Session, job: PartJob, since: int) -> None:
        """`since`: the slowdown's pauses begun when the part was taken (`Slowdown.busy`)."""
        try:
            encoded = self._encode(job)
            body = encoded.parts[job.part - 1] if job.part <= len(encoded.parts) else b""
            validity = "" if job.valid_until is None else smpp_time(job.valid_until)
            part = Submit(
                job.phone_number,
                body,
                encoded.esm_class,
                encoded.data_coding,
                job.with_delivery_report,
                validity,
            )
            self.awaiting += 1
            try:
                if self._over_now(session):  # (it became so since the part was taken)
                    answer = Answer(False, None, reason="not sent: the session is ending")
                elif not self._leased():  # (run out since the part was taken: a pause)
                    self.ready.appendleft(job)  # still intended: it goes once renewed
                    return
                else:
                    answer = await session.submit(part)
                if answer.sent and answer.status is None and not session.dead:
                    session.unanswered = True  # before its place frees: no more on it
                    self.poke()
            finally:
                self.awaiting -= 1
        finally:
            self.free += 1
            self._wake.set()
        if answer.sent or answer.status is not None:  # (a generic_nack: sent, and refused)
            metrics.link_submitted(self.link.device_id, _answer_label(answer))
        if answer.status == 0:
            self.slowdown.accepted()
            self.reconnects.carried = True  # the session held (the backoff starts over)
            if answer.message_id is None:
                log.warning("link %s: the SMSC accepted a part without an id; no receipt "
                            "can name it", self.link.device_id)  # fmt: skip
            self._answer(job, repository.ACCEPTED, answer.message_id, None)
        elif answer.busy:
            assert answer.status is not None
            self.slowdown.busy(since)
            log.info("link %s: the SMSC is busy (%s); slowing down", self.link.device_id,
                     status_text(answer.status))  # fmt: skip
            await self._again(job)
        elif answer.status is not None:
            error = f"the SMSC refused submit_sm: {status_text(answer.status)}"
            self._answer(job, repository.REJECTED, None, error)
        elif not answer.sent:
            await self._again(job)
        else:
            log.warning("link %s: %s", self.link.device_id, answer.reason)
            self._answer(job, repository.UNKNOWN, None, service.NO_ANSWER)

    async def _again(self, job: PartJob) -> None:
        """The part was certainly not accepted: planned again (recorded before it can be
        submitted again), first in line."""
        await service.unintend(self.db, [job.id])
        self.backlog.appendleft(job)
        self.poke()

    def _answer(self, job: PartJob, outcome: str, smsc_id: str | None, error: str | None) -> None:
        self.queued.discard(job.id)
        self.answers.append((job.id, outcome, smsc_id, error))
        self._flush_now.set()

    # Receiving.

    async def _read(self, session: Session) -> None:
        try:
            while (inbound := await session.next()) is not None:
                await self._inbound(inbound)
        finally:
            self.poke()

    async def _inbound(self, inbound: Inbound) -> None:
        text, state = inbound.short_message, inbound.message_state
        if is_receipt(inbound.esm_class, inbound.receipted_id, state, text):
            receipt = parse(text, inbound.receipted_id, state)
            if receipt is not None and receipt.final:
                metrics.link_receipt(self.link.device_id, receipt.delivered)
                self.receipts.append((self.monotonic(), receipt))
                self._flush_now.set()
            elif receipt is None:
                log.warning("link %s: a receipt named no part (no receipted_message_id, no "
                            "id:); ignored", self.link.device_id)  # fmt: skip
            elif receipt.stat not in PASSING:
                log.warning("link %s: a receipt for %r gave no final state (stat %r); ignored",
                            self.link.device_id, receipt.smsc_id, receipt.stat)  # fmt: skip
            return
        mo = service.MobileOriginated(
            inbound.source_addr, inbound.source_ton == 1, inbound.esm_class,
            inbound.data_coding, inbound.short_message, inbound.segment,
        )  # fmt: skip
        try:
            await service.received(self.db, self.link, mo, self.options.opt_outs)
        except Exception as error:  # the carrier has its deliver_sm_resp already (docs/links.md)
            log.error("link %s: an incoming SMS could not be stored, and is lost: %s",
                      self.link.device_id, service.error_kind(error))  # fmt: skip
            return
        self.signals.emit(signals.OUTBOX_FILLED)

    # Recording answers and receipts.

    async def _settle(
        self, answers: list[service.Outcome], receipts: list[Receipt], loose: set[str]
    ) -> service.Settled:
        return await service.settle(
            self.db, self.link, answers, receipts, loose, bases=self.same_base is not True
        )

    def _learn_base(self, matched: list[Receipt], loose: set[str], crossed: int) -> None:
        """`same_base` from the receipts that found their parts (`matched`)."""
        if self.same_base is not None:
            return
        if crossed:
            self.same_base = False
            return
        for receipt in matched:
            digits = receipt.smsc_id.lstrip("0")
            if receipt.smsc_id in loose or len(digits) < 2:
                continue
            if not digits.isdigit():  # (carrier_id's ids: a hex letter, or not hex at all)
                self.same_base = True
                return
            self.as_spelled += 1
        if self.as_spelled >= SAME_BASE_AFTER:
            self.same_base = True

    async def _one_by_one(
        self,
        answers: list[service.Outcome],
        receipts: list[tuple[float, Receipt]],
        loose: set[str],
    ) -> tuple[service.Settled, list[Receipt]]:
        """Answers and receipts whose recording together the database refused (`_refused`),
        recorded each on its own (answers first): one it refuses whatever happens (a value
        it cannot hold) must not keep the others out for ever. One refused on its own twice,
        while others of the lot were recorded, is dropped with an error in the log; the
        receipts dropped are returned beside what was recorded. When none could be
        recorded, or the database fails otherwise (it is down, say), what was not recorded
        goes back to be tried again, and the error is raised."""
        events, unmatched, crossed, dropped = 0, [], 0, []
        waiting: list[tuple[service.Outcome | None, tuple[float, Receipt] | None]] = [
            *((answer, None) for answer in answers),
            *((None, receipt) for receipt in receipts),
        ]
        refused: list[tuple[service.Outcome | None, tuple[float, Receipt] | None]] = []
        recorded = False
        try:
            for _ in range(2):  # the second time, what was refused
                refused, problems = [], []
                while waiting:
                    answer, receipt = waiting[0]
                    try:
                        settled = await self._settle(
                            [answer] if answer else [], [receipt[1]] if receipt else [], loose
                        )
                    except Exception as error:
                        if not _refused(error):
                            raise
                        refused.append(waiting.pop(0))
                        problems.append(error)
                        continue
                    waiting.pop(0)
                    recorded = True
                    events += settled.events
                    unmatched += settled.unmatched
                    crossed += settled.crossed
                if not recorded:
                    raise problems[-1]
                waiting, refused = refused, []
            for (answer, receipt), problem in zip(waiting, problems, strict=True):
                what = f"the answer for part {answer[0]}" if answer else "a receipt for "
                if receipt:
                    what += repr(receipt[1].smsc_id)
                    dropped.append(receipt[1])
                log.error("link %s: %s could not be recorded; dropped: %s",
                          self.link.device_id, what, service.error_kind(problem))  # fmt: skip
        except BaseException:
            back = waiting + refused
            self.answers[:0] = [answer for answer, _ in back if answer]
            self.receipts[:0] = [receipt for _, receipt in back if receipt]
            self._emitted(events)
            raise
        return service.Settled(events, unmatched, crossed), dropped

    async def _flush_loop(self) -> None:
        while True:
            wait = None
            if self.orphans:
                wait = max(0.0, min(due for _, due, _ in self.orphans) - self.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), wait)
            await asyncio.sleep(GATHER_SECONDS)  # more answers and receipts: one commit
            self._flush_now.clear()
            try:
                await self._flush()
            except Exception as error:  # (said without its words: they may quote values)
                log.error("link %s: recording answers failed; retrying: %s",
                          self.link.device_id, service.error_kind(error))  # fmt: skip
                await asyncio.sleep(1.0)

    async def _flush(self, final: bool = False) -> None:
        answers, self.answers = self.answers, []
        receipts, self.receipts = self.receipts, []
        at = self.monotonic()
        if self.orphans:  # those due tried again
            again = [(seen, r) for seen, due, r in self.orphans if final or due <= at]
            if again:
                receipts = again + receipts
                self.orphans = [o for o in self.orphans if not final and o[1] > at]
        if not answers and not receipts:
            return
        loose = {r.smsc_id for seen, r in receipts if final or at - seen >= LOOSE_SECONDS}
        dropped: list[Receipt] = []
        try:
            settled = await self._settle(answers, [r for _, r in receipts], loose)
        except BaseException as error:
            if len(answers) + len(receipts) < 2 or not _refused(error):  # (cancelled, say)
                self.answers[:0], self.receipts[:0] = answers, receipts
                raise
            settled, dropped = await self._one_by_one(answers, receipts, loose)
        self._emitted(settled.events)
        now = self.monotonic()
        kept = [r for _, r in receipts if r not in settled.unmatched and r not in dropped]
        self._learn_base(kept, loose, settled.crossed)
        for seen, receipt in receipts:
            if receipt not in settled.unmatched:
                continue
            if final or now - seen >= ORPHAN_SECONDS:
                log.warning("link %s: a receipt for %r named no part awaiting one; dropped",
                            self.link.device_id, receipt.smsc_id)  # fmt: skip
            else:
                again_at = min(now + max(ORPHAN_EVERY_SECONDS, now - seen), seen + ORPHAN_SECONDS)
                self.orphans.append((seen, again_at, receipt))
