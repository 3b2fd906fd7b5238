"""The application context: everything a request needs, built once in create_app's lifespan,
shared by both faces (api/ and web/) and found from any request or connection."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from smsgw.accounts.passwords import CredentialCache
from smsgw.accounts.throttle import AuthThrottle, RateLimiter
from smsgw.apikeys.service import KeyChecker
from smsgw.config import Settings
from smsgw.db.engine import Database
from smsgw.devices.presence import Presence
from smsgw.devices.recent import RecentPhones
from smsgw.events.hub import EventHub
from smsgw.events.signals import Signals
from smsgw.routing.service import SettledReports
from smsgw.tokens.service import TokenService

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from smsgw.workers.batches import BatchSender


@dataclass
class AppContext:
    """Everything a request needs, built once in create_app's lifespan."""

    settings: Settings
    db: Database
    credentials: CredentialCache
    hub: EventHub = field(default_factory=EventHub)
    presence: Presence = field(default_factory=Presence)
    #: Phones' tokens found valid a moment ago (devices/recent.py), for pulls and reports.
    recent_phones: RecentPhones = field(default_factory=RecentPhones)
    registrations: RateLimiter = field(default_factory=lambda: RateLimiter(10))
    #: Dashboard sign-in attempts per client address (web/auth.py).
    web_logins: RateLimiter = field(default_factory=lambda: RateLimiter(10))
    #: JWT issue/verify/revoke; None (Bearer refused) only where no service was built.
    tokens: TokenService | None = None
    #: Checks named API keys (Bearer `smsgw_...`); None (keys refused) where not built.
    keys: KeyChecker | None = None
    auth_throttle: AuthThrottle = field(default_factory=lambda: AuthThrottle(30, 10, 300))
    #: Signals of this application (events/signals.py): workers subscribe at start.
    signals: Signals = field(default_factory=Signals)
    #: Password checks under way, by the credential cache's digest of their pair.
    checks: dict[bytes, asyncio.Future[int]] = field(default_factory=dict)
    #: State reports whose repeats are answered without a unit of work (routing/service.py).
    settled: SettledReports = field(default_factory=SettledReports)
    #: Sends the dashboard's bulk sends (workers/batches.py); None until the workers start.
    batches: BatchSender | None = None

    def forget_sender(self, device_id: str) -> None:
        """A phone or link was deleted here: it is no longer online, and its token (a
        phone's) no longer taken without a read (devices/recent.py)."""
        self.presence.forget(device_id)
        self.recent_phones.forget(device_id)


def context_of(connection: HTTPConnection) -> AppContext:
    context: AppContext = connection.app.state.context
    return context
