"""create_app(settings) -> the FastAPI application, with its lifespan."""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import hmac
import logging
import shlex
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.routing import BaseRoute

from smsgw import __version__, heap
from smsgw.accounts import passwords
from smsgw.accounts import service as accounts
from smsgw.accounts.passwords import CredentialCache
from smsgw.accounts.throttle import AuthThrottle, RateLimiter
from smsgw.api import redact
from smsgw.api.apps import build_router
from smsgw.api.apps import messages as api_messages
from smsgw.api.errors import BodyLimitMiddleware, UnexpectedErrorMiddleware, install_handlers
from smsgw.api.fastpath import FastLane, FastPaths, serve_fast
from smsgw.api.health import metrics_router
from smsgw.api.health import router as health_router
from smsgw.api.mobile import build_router as build_mobile_router
from smsgw.api.mobile import messages as mobile_messages
from smsgw.api.openapi import install_openapi
from smsgw.api.routing import (
    MOBILE_PREFIXES,
    THIRDPARTY_PREFIXES,
    add_routes,
    hot_first,
    moved_route,
)
from smsgw.apikeys.service import KeyChecker
from smsgw.bulk.csvfile import MAX_BYTES as CSV_MAX_BYTES
from smsgw.config import Settings
from smsgw.context import AppContext
from smsgw.db import migrate
from smsgw.db.engine import Database, database_for
from smsgw.db.postgres import PostgresDatabase
from smsgw.events import signals
from smsgw.events.bus import Bus, Cluster, EventBus
from smsgw.events.hub import Event, EventHub, PhoneEvent
from smsgw.events.pgbus import PgBus
from smsgw.events.shared_hub import SharedHub
from smsgw.events.user_feed import feed_of
from smsgw.forwarded import ForwardedMiddleware, is_loopback_host, refused_by_phones
from smsgw.health.service import Probe
from smsgw.inbox import exports
from smsgw.metrics import MetricsMiddleware, check_multiprocess
from smsgw.tokens.secret import signing_key
from smsgw.tokens.service import TokenService
from smsgw.web import install as install_web
from smsgw.workers.batches import BatchSender
from smsgw.workers.links import LinkSupervisor
from smsgw.workers.loop import Worker
from smsgw.workers.virtual import VirtualDriver
from smsgw.workers.webhooks import WebhookWorker

log = logging.getLogger("smsgw")
#: A dashboard CSV upload may be this large (the file's limit, with room for the form).
UPLOAD_LIMIT = CSV_MAX_BYTES + 256 * 1024
__all__ = ["MOBILE_PREFIXES", "THIRDPARTY_PREFIXES", "create_app"]


def local_url(settings: Settings) -> str:
    """Where a person on this machine reaches the server: SMSGW_PUBLIC_URL when set, else
    the listening address (a wildcard one reached as the loopback address)."""
    if settings.public_url:
        return settings.public_url
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(  # noqa: S104
        settings.host, settings.host
    )
    return f"http://[{host}]:{settings.port}" if ":" in host else f"http://{host}:{settings.port}"


def announce_account(login: str, password: str, settings: Settings) -> None:
    """Print the first account's credentials, once, where the operator sees them, with a
    command that works as printed."""
    credentials = shlex.quote(f"{login}:{password}")
    print(
        "\n"
        "  smsgw created the first account (shown only this once):\n"
        f"    login:    {login}\n"
        f"    password: {password}\n"
        f"  Try: curl -u {credentials} {local_url(settings)}/api/3rdparty/v1/messages\n",
        flush=True,
    )


def announce_migration(outcome: migrate.Outcome, settings: Settings) -> None:
    """Say on the console when start-up created or upgraded the database."""
    if outcome != "current":
        path = migrate.sqlite_path(settings)
        if path is None:
            from smsgw.db.postgres import shown

            print(
                f"smsgw {outcome} the database {shown(settings.resolved_database_url)}", flush=True
            )
        else:
            print(f"smsgw {outcome} the database {path}", flush=True)


def probe_of(settings: Settings, db: Database) -> Probe:
    """What the health checks look at: the database and the data directory."""
    return Probe(
        ping=db.ping,
        data_dir=Path(db.path).parent if db.path else settings.data_dir,
        min_free_mb=settings.health_min_free_mb,
        stall_seconds=settings.worker_stall_seconds,
    )


async def join(
    settings: Settings, cluster: Cluster | None, db: Database
) -> tuple[EventBus | None, EventHub]:
    """The event hub of this process: its own, or one shared with the other processes: those
    of this serve (`cluster`, over a local bus), or on PostgreSQL every process of every
    node on the database (over LISTEN/NOTIFY: events/pgbus.py)."""
    bus: EventBus
    if isinstance(db, PostgresDatabase):
        bus = PgBus(db.connect_arguments, bus_key(settings))
    elif cluster is not None:
        bus = Bus(cluster)
    else:
        return None, EventHub()
    await bus.start()
    hub = SharedHub(bus)
    await hub.start()
    feed = feed_of(db)  # the dashboard's live views hear of changes made by any process
    feed.relay = lambda user_id: bus.broadcast(["f", user_id])
    bus.on("f", lambda _sender, message: feed.notify(int(message[1])))
    # Inbox refreshes asked through another process, for phones whose streams are here.
    hub.on_ask(
        exports.EXPORTS_ASK, lambda phones: _in_background(exports.send_pending(db, hub, phones))
    )
    if isinstance(bus, PgBus):
        bus.on_gap(lambda: catch_up(db, hub))
    return bus, hub


def bus_key(settings: Settings) -> bytes:
    """The key of the MACs on PostgreSQL's bus: the nodes' shared JWT secret's, for this use."""
    return hmac.new(signing_key(settings), b"event bus", hashlib.sha256).digest()


def catch_up(db: Database, hub: SharedHub) -> None:
    """What this process may have missed while it heard nothing from the others (a gap in
    LISTEN/NOTIFY): its phones are told what a phone is told when it connects (pull, fetch
    the webhooks and the settings, the inbox exports asked meanwhile), the dashboards read
    afresh, and the others hear again which phones are here. (A cancellation sent during the
    gap is not replayed: the phone's report of the message is answered as for any cancelled
    message.)"""
    hub.resync()
    held = sorted(hub.held())
    for name in (PhoneEvent.MESSAGE_ENQUEUED, PhoneEvent.WEBHOOKS_UPDATED,
                 PhoneEvent.SETTINGS_UPDATED):  # fmt: skip
        EventHub.publish(hub, held, Event(name))
    _in_background(exports.send_pending(db, hub, held))
    feed_of(db).notify_all()


def share_limits(bus: EventBus, context: AppContext) -> None:
    """The sign-in, registration and dashboard sign-in limits count what every process
    counts: each event counted or taken back here is told to the others, which count it as
    theirs (accounts/throttle.py). A process that starts later, or misses a notice, counts
    a little less, never more."""
    throttle = context.auth_throttle
    limiters = {
        "address": throttle.addresses, "login": throttle.logins, "code": throttle.codes,
        "registration": context.registrations, "web": context.web_logins,
    }  # fmt: skip
    key = hmac.new(signing_key(context.settings), b"shared limits", hashlib.sha256).digest()
    # The same addresses and logins come back: each digest is worked out once.
    keyed = functools.lru_cache(maxsize=4096)(functools.partial(_keyed, key))
    for name, limiter in limiters.items():
        limiter.relay = functools.partial(_relay, bus, name)
        limiter.keyed = keyed

    def heard(sender: Any, message: list[Any]) -> None:
        _, name, op, key, stamp = message
        limiter = limiters.get(name)
        if limiter is not None:
            limiter.heard(sender, str(op), str(key), float(stamp))

    bus.on("t", heard)


def _keyed(key: bytes, what: str) -> str:
    return hmac.new(key, what.encode(), hashlib.sha256).hexdigest()[:32]


def _relay(bus: EventBus, name: str, op: str, key: str, stamp: float) -> None:
    bus.broadcast(["t", name, op, key, stamp])


_background: set[asyncio.Task[None]] = set()


def _in_background(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` without waiting for it (kept referenced until done; failures are logged)."""
    task = asyncio.get_running_loop().create_task(work)
    _background.add(task)

    def done(finished: asyncio.Task[None]) -> None:
        _background.discard(finished)
        if not finished.cancelled() and finished.exception() is not None:
            log.error("background work failed", exc_info=finished.exception())

    task.add_done_callback(done)


def create_app(settings: Settings, cluster: Cluster | None = None) -> FastAPI:
    """Build the application; the database is opened (and migrated) when it starts.

    `cluster` says which of several server processes this one is (`smsgw serve` with
    SMSGW_WORKERS > 1): its phones' events then reach the others' (events/shared_hub.py).
    Each part is built by a constructor of its own below: a new engine or a new kind of
    sender changes one of them, not the whole wiring.
    """
    check_multiprocess()  # several server processes: their counters must reach the scrape
    app = FastAPI(
        title="smsgw",
        version=__version__,
        description="Self-hosted SMS gateway. Auth: Basic, or a JWT Bearer token from /auth/token.",
        lifespan=lambda app: lifespan(app, settings, cluster),
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        servers=[{"url": "/"}],
        # FastAPI's own OpenTelemetry hooks, which nothing here configures: off, so that no
        # request pays for asking whether they are on (metrics: /metrics, metrics.py).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_handlers(app)
    redact.install()  # hook secrets travel in paths: keep them out of the access log
    install_openapi(app, settings)
    add_middlewares(app, settings)
    add_routers(app)
    install_web(app)  # home, API documentation, dashboard (web/)
    # Outermost: everything after it sees the client, scheme and host a trusted proxy forwarded.
    app.add_middleware(ForwardedMiddleware, trusted=settings.trusted_proxies)
    return app


@asynccontextmanager
async def lifespan(
    app: FastAPI, settings: Settings, cluster: Cluster | None
) -> AsyncIterator[None]:
    """Open the database and the hubs, make what the first start makes, run the workers; and
    close it all in reverse when the server stops."""
    if settings.auto_migrate:
        announce_migration(await asyncio.to_thread(migrate.upgrade, settings), settings)
    db = database_for(settings)
    passwords.warm_up()
    bus, hub = await join(settings, cluster, db)
    app.state.context = context = build_context(settings, db, hub)
    if bus is not None:
        share_limits(bus, context)
    await first_start(context)
    heap.freeze_start_up()
    app.state.probe = probe_of(settings, db)
    workers = start_workers(app, context)
    try:
        yield
    finally:
        await stop_workers(workers)
        await hub.stop()
        if bus is not None:
            await bus.stop()
        await db.dispose()


def build_context(settings: Settings, db: Database, hub: EventHub) -> AppContext:
    """What every request needs (context.py)."""
    tokens = TokenService(settings, db)
    return AppContext(
        settings=settings,
        db=db,
        hub=hub,
        credentials=CredentialCache(settings.credential_cache_size),
        registrations=RateLimiter(settings.registration_rate_limit),
        web_logins=RateLimiter(settings.web_login_rate_limit),
        tokens=tokens,
        keys=KeyChecker(db, tokens.revocations),
        auth_throttle=AuthThrottle(
            settings.auth_failures_per_address,
            settings.auth_failures_per_login,
            settings.auth_failure_window_seconds,
            settings.code_failures_per_window,
        ),
    )


async def first_start(context: AppContext) -> None:
    """Warnings, the JWT secret's start, and the first account when due."""
    settings = context.settings
    warn_of_plain_hooks(settings)
    assert context.tokens is not None
    await context.tokens.note_secret()  # when the JWT secret became current (hook URLs)
    if settings.bootstrap_account:
        account = await accounts.bootstrap(context.db)
        if account is not None:
            announce_account(account.login, account.password, settings)


@dataclass
class Workers:
    """The background work of one process and its tasks."""

    loop: Worker
    webhooks: WebhookWorker
    tasks: list[asyncio.Task[None]]
    #: The virtual phones' driver, where they are on (workers/virtual.py).
    virtual: VirtualDriver | None = None
    #: The bulk sends' sender (workers/batches.py).
    batches: BatchSender | None = None
    #: The carrier links' supervisor, where links are on (workers/links.py).
    links: LinkSupervisor | None = None


def start_workers(app: FastAPI, context: AppContext) -> Workers:
    """The periodic worker (expiry, stale claims, presence, wake-ups), the webhook delivery
    worker, which hears of new outbox rows through a signal (events/signals.py), and the
    virtual phones' driver and the carrier links' supervisor where they are on."""
    settings, db = context.settings, context.db
    app.state.worker = loop = Worker(settings, db, context.hub, context.presence)
    app.state.webhook_worker = webhooks = WebhookWorker(settings, db)
    context.signals.subscribe(signals.OUTBOX_FILLED, webhooks.poke)
    context.batches = batches = BatchSender(settings, db, context.hub, context.signals)
    tasks = [
        asyncio.create_task(loop.run(), name="smsgw-worker"),
        asyncio.create_task(webhooks.run(), name="smsgw-webhooks"),
        asyncio.create_task(batches.run(), name="smsgw-batches"),
    ]
    virtual = None
    if settings.virtual_phones_enabled:
        virtual = VirtualDriver(settings, db, context.presence, context.signals)
        tasks.append(asyncio.create_task(virtual.run(), name="smsgw-virtual-phones"))
    links = None
    if settings.links:
        links = LinkSupervisor(settings, db, context.presence, context.signals)
        tasks.append(asyncio.create_task(links.run(), name="smsgw-links"))
    return Workers(loop, webhooks, tasks, virtual, batches, links)


async def stop_workers(workers: Workers) -> None:
    await workers.webhooks.wind_down()  # the requests out may be answered first
    for running in workers.tasks:
        await cancel_and_wait(running)
    await workers.webhooks.release_leases()
    if workers.batches is not None:
        await workers.batches.stop()
    if workers.virtual is not None:
        await workers.virtual.stop()
    if workers.links is not None:
        await workers.links.stop()
    await workers.loop.flush_presence()


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait until it has ended. Python 3.11's `asyncio.wait_for` can swallow
    a cancel that lands just as its wait ends (the workers wait that way between rounds), and
    the loop would then run on: cancel again until the task is done."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=1)
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())


def add_middlewares(app: FastAPI, settings: Settings) -> None:
    """Innermost first: the phones' fast paths (filled by add_routers), unexpected errors
    answered in the app, body limits, HTTP metrics."""
    app.state.fast_paths = FastPaths()
    app.add_middleware(FastLane, paths=app.state.fast_paths)
    app.add_middleware(UnexpectedErrorMiddleware)
    hooks_limit = max(settings.phone_post_max_bytes, settings.max_body_bytes)
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.max_body_bytes,
        wider=[(f"{prefix}/hooks/", hooks_limit) for prefix in MOBILE_PREFIXES]
        + [("/dashboard/bulk", max(UPLOAD_LIMIT, settings.max_body_bytes))],
    )
    # Operations (docs/operations.md): health probes, /metrics, and the HTTP metrics.
    app.add_middleware(MetricsMiddleware)


@functools.cache
def api_routes() -> tuple[BaseRoute, ...]:
    """The routes of the two APIs under each of their prefixes, flat (api/routing.py: an
    included router costs every request it serves), built once a process: FastAPI analyses
    each route's parameters and models as it is added, and would again for each
    application the tests make. Each application serves copies (`add_routers`).

    Each API is analysed once, under its first prefix (the one in the OpenAPI document);
    under the other it serves the same routes moved (`moved_route`) rather than analysing
    them there again: 0.21 s of CPU for all of them, 0.31 s before."""
    routes: list[BaseRoute] = []
    for prefixes, build in (
        (THIRDPARTY_PREFIXES, build_router),
        (MOBILE_PREFIXES, build_mobile_router),
    ):
        built = APIRouter()
        add_routes(built, build(), prefix=prefixes[0], include_in_schema=True)
        routes += built.routes
        for prefix in prefixes[1:]:
            routes += [moved_route(route, prefixes[0], prefix) for route in built.routes]
    return tuple(routes)


def add_routers(app: FastAPI) -> None:
    """The APIs, /metrics and the health probes. Routes are matched in order, one by one: the
    busiest (the API, then the phones') first.

    The APIs' routes are shallow copies of `api_routes`: they share FastAPI's analysis, and
    what is set on one application's route (a test wraps its handler) reaches no other.
    They differ from routes added by `app.router.add_api_route` in two things that change
    nothing smsgw serves: no application's dependency overrides apply to them (smsgw sets
    none), and their strict_content_type is FastAPI's default (True) rather than the
    application's (True)."""
    app.router.routes.extend(copy.copy(route) for route in api_routes())
    # A delivered message costs a phone a share of a pull and about three reports
    # (docs/performance.md): those routes are tried before the rest.
    hot_first(app, {MOBILE_PREFIXES[0] + "/message"})
    paths: FastPaths = app.state.fast_paths
    for prefixes, fast in (
        (THIRDPARTY_PREFIXES, api_messages.FAST_PATHS),
        (MOBILE_PREFIXES, mobile_messages.FAST_PATHS),
    ):
        for method, path, handler in fast:
            serve_fast(app, paths, method, {prefix + path for prefix in prefixes}, handler)
    app.include_router(metrics_router)
    for prefix in ("", *THIRDPARTY_PREFIXES):
        app.include_router(
            health_router, prefix=prefix, include_in_schema=prefix in ("", THIRDPARTY_PREFIXES[0])
        )


def end_streams(app: FastAPI) -> None:
    """The server is stopping: end the phones' and the dashboard's event streams now (both
    reconnect by themselves), rather than have the stop wait for them; and the webhook
    worker takes no delivery any more, while those out may still be answered (its grace
    runs from now, beside uvicorn's wait for the requests in progress)."""
    context: AppContext | None = getattr(app.state, "context", None)
    if context is None:  # not started
        return
    context.hub.end_streams()
    feed_of(context.db).end_all()
    webhooks: WebhookWorker | None = getattr(app.state, "webhook_worker", None)
    if webhooks is not None:
        webhooks.finish()


def warn_of_plain_hooks(settings: Settings) -> None:
    """Say at start when phones would be handed hook URLs their app refuses (plain http://
    to another machine): every received SMS would then be lost on the phone."""
    if settings.public_url is not None:
        if refused_by_phones(settings.public_url):
            log.warning(
                "SMSGW_PUBLIC_URL is http:// to another host: the Android app refuses such "
                "webhook URLs, so phones cannot post received messages. Serve smsgw over "
                "https (docs/phones.md) and set SMSGW_PUBLIC_URL=https://..."
            )
        return
    if not is_loopback_host(settings.host):
        log.warning(
            "SMSGW_PUBLIC_URL is unset: phones are told webhook URLs as they reached smsgw. "
            "Reached over plain http:// from another machine, the app refuses them. Put smsgw "
            "behind an https proxy that sends X-Forwarded-Proto (trusted through "
            "SMSGW_FORWARDED_ALLOW_IPS), or set SMSGW_PUBLIC_URL=https://... (docs/phones.md)"
        )
