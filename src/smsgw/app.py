"""create_app(settings) -> the FastAPI application, with its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import shlex
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from smsgw import __version__
from smsgw.accounts import passwords
from smsgw.accounts import service as accounts
from smsgw.accounts.passwords import CredentialCache
from smsgw.accounts.throttle import AuthThrottle, RateLimiter
from smsgw.api import mobile, redact, scopes
from smsgw.api.apps import build_router
from smsgw.api.deps import AppContext
from smsgw.api.errors import BodyLimitMiddleware, UnexpectedErrorMiddleware, install_handlers
from smsgw.api.health import metrics_router
from smsgw.api.health import router as health_router
from smsgw.api.mobile import build_router as build_mobile_router
from smsgw.api.routing import add_routes
from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.engine import Database
from smsgw.events import signals
from smsgw.events.bus import Bus, Cluster, close_quietly
from smsgw.events.hub import EventHub
from smsgw.events.shared_hub import SharedHub
from smsgw.events.user_feed import feed_of
from smsgw.forwarded import ForwardedMiddleware, is_loopback_host, refused_by_phones
from smsgw.health.service import Probe
from smsgw.inbox import exports
from smsgw.messages.schemas import ErrorBody
from smsgw.metrics import MetricsMiddleware, check_multiprocess
from smsgw.tokens.service import TokenService
from smsgw.web import install as install_web
from smsgw.workers.loop import Worker
from smsgw.workers.webhooks import WebhookWorker

log = logging.getLogger("smsgw")

THIRDPARTY_PREFIXES = ("/api/3rdparty/v1", "/3rdparty/v1")
MOBILE_PREFIXES = ("/api/mobile/v1", "/mobile/v1")
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
#: Answers any operation can give (api/errors.py), documented where a route did not say.
GENERIC_ERRORS = {
    "400": "A parameter or the body is invalid or malformed; the message says which.",
    "413": "The request body is larger than the server accepts.",
    "500": "An unexpected server error; it is logged.",
}


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
        where = migrate.sqlite_path(settings) or "the configured database"
        print(f"smsgw {outcome} the database {where}", flush=True)


THIRDPARTY_SECURITY = {
    "basicAuth": {"type": "http", "scheme": "basic"},
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
}
SECURITY_SCHEMES = {**THIRDPARTY_SECURITY, **mobile.SECURITY_SCHEMES}


def _document_mobile_security(schema: dict[str, Any], anonymous_registration: bool) -> None:
    """The phone's operations: a phone token, unless the mobile API's table says otherwise."""
    prefix = MOBILE_PREFIXES[0]
    for path, path_item in schema.get("paths", {}).items():
        if not path.startswith(prefix + "/"):
            continue
        for method, operation in path_item.items():
            if method in HTTP_METHODS:
                security = mobile.SECURITY.get((method, path[len(prefix) :]), mobile.PHONE)
                operation["security"] = list(security)
    registration = schema.get("paths", {}).get(f"{prefix}/device", {}).get("post")
    if registration is not None and anonymous_registration:
        registration["security"].append({})


def document_security(schema: dict[str, Any], anonymous_registration: bool) -> dict[str, Any]:
    """Say which operations take which credentials, in place: every 3rd-party operation but
    the public ones of the scope table (api/scopes.py) takes Basic or a Bearer JWT, unless the
    route declared its own (the refresh route takes a Bearer token only); the phone's
    operations as the mobile API says (api/mobile/__init__.py)."""
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, path_item in schema.get("paths", {}).items():
        relative = scopes.relative_path(path)
        if relative is None:
            continue
        for method, operation in path_item.items():
            key = (method.upper(), relative)
            if method in HTTP_METHODS and scopes.ROUTE_SCOPES.get(key) != scopes.PUBLIC:
                operation.setdefault("security", [{name: []} for name in THIRDPARTY_SECURITY])
    _document_mobile_security(schema, anonymous_registration)
    return schema


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document tell the truth about error answers, in place.

    FastAPI documents a 422 `HTTPValidationError` for every route with inputs, but smsgw
    answers validation failures with 400 and `{"message"}`: drop the 422s, and add the
    errors any route can give (400, 401/429 when it needs credentials, 403 when a scoped
    token can call it, 413, 500) where missing.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            wanted = dict(GENERIC_ERRORS)
            security = operation.get("security") or []
            if security:
                wanted["401"] = "Missing or wrong credentials."
                wanted["429"] = "Too many failed sign-ins; try again after `Retry-After` seconds."
            if any("bearerAuth" in requirement for requirement in security):
                wanted["403"] = "The token lacks the scope this needs (`scope required: ...`)."
            for status, description in wanted.items():
                responses.setdefault(
                    status,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": ERROR_REF}},
                    },
                )
            operation["responses"] = dict(sorted(responses.items()))
    for name in ("HTTPValidationError", "ValidationError"):  # in this order: one uses the other
        rest = {key: value for key, value in components.items() if key != name}
        if f'"#/components/schemas/{name}"' not in json.dumps([schema.get("paths"), rest]):
            components.pop(name, None)
    components.setdefault("ErrorBody", ErrorBody.model_json_schema())
    return schema


def probe_of(settings: Settings, db: Database) -> Probe:
    """What the health checks look at: the database file and the directory holding it."""
    return Probe(
        database_path=db.path,
        data_dir=Path(db.path).parent,
        min_free_mb=settings.health_min_free_mb,
        stall_seconds=settings.worker_stall_seconds,
    )


async def join(cluster: Cluster | None, db: Database) -> tuple[Bus | None, EventHub]:
    """The event hub of this process: its own, or one shared with the other processes."""
    if cluster is None:
        return None, EventHub()
    bus = Bus(cluster)
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
    return bus, hub


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
    """
    check_multiprocess()  # several server processes: their counters must reach the scrape

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auto_migrate:
            announce_migration(await asyncio.to_thread(migrate.upgrade, settings), settings)
        db = Database(settings)
        passwords.warm_up()
        bus, hub = await join(cluster, db)
        context = AppContext(
            settings=settings,
            db=db,
            hub=hub,
            credentials=CredentialCache(settings.credential_cache_size),
            registrations=RateLimiter(settings.registration_rate_limit),
            tokens=TokenService(settings, db),
            auth_throttle=AuthThrottle(
                settings.auth_failures_per_address,
                settings.auth_failures_per_login,
                settings.auth_failure_window_seconds,
                settings.code_failures_per_window,
            ),
        )
        app.state.context = context
        warn_of_plain_hooks(settings)
        assert context.tokens is not None
        await context.tokens.note_secret()  # when the JWT secret became current (hook URLs)
        if settings.bootstrap_account:
            account = await accounts.bootstrap(db)
            if account is not None:
                announce_account(account.login, account.password, settings)
        # What start-up loaded lives as long as the process: keep the collector from walking
        # it on every full collection (those pauses were most of the API's p99 latency).
        gc.collect()
        gc.freeze()
        worker = Worker(settings, db, context.hub, context.presence)
        app.state.worker = worker
        app.state.probe = probe_of(settings, db)
        task = asyncio.create_task(worker.run(), name="smsgw-worker")
        # Webhooks: the outbox delivery worker (workers/webhooks.py).
        app.state.webhook_worker = webhook_worker = WebhookWorker(settings, db)
        webhook_task = asyncio.create_task(webhook_worker.run(), name="smsgw-webhooks")
        context.signals.subscribe(signals.OUTBOX_FILLED, webhook_worker.poke)
        try:
            yield
        finally:
            for running in (task, webhook_task):
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
            await worker.flush_presence()
            await hub.stop()
            close_quietly(bus)
            if context.tokens is not None:
                context.tokens.close()
            await db.dispose()

    app = FastAPI(
        title="smsgw",
        version=__version__,
        description="Self-hosted SMS gateway. Auth: Basic, or a JWT Bearer token from /auth/token.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        servers=[{"url": "/"}],
    )
    install_handlers(app)
    redact.install()  # hook secrets travel in paths: keep them out of the access log
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = document_security(generate_openapi(), settings.anonymous_registration)
            app.openapi_schema = document_errors(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(UnexpectedErrorMiddleware)  # innermost: the first added
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.max_body_bytes,
        wider=tuple(f"{prefix}/hooks/" for prefix in MOBILE_PREFIXES),
        wider_limit=max(settings.phone_post_max_bytes, settings.max_body_bytes),
    )
    # Operations (docs/operations.md): health probes, /metrics, and the HTTP metrics.
    app.add_middleware(MetricsMiddleware)
    # Routes are matched in order, one by one: the busiest (the API, then the phones') first,
    # added flat (api/routing.py: an included router costs every request it serves).
    for prefix in THIRDPARTY_PREFIXES:
        add_routes(
            app, build_router(), prefix=prefix, include_in_schema=prefix == THIRDPARTY_PREFIXES[0]
        )
    for prefix in MOBILE_PREFIXES:
        add_routes(
            app,
            build_mobile_router(),
            prefix=prefix,
            include_in_schema=prefix == MOBILE_PREFIXES[0],
        )
    app.include_router(metrics_router)
    for prefix in ("", *THIRDPARTY_PREFIXES):
        app.include_router(
            health_router, prefix=prefix, include_in_schema=prefix in ("", THIRDPARTY_PREFIXES[0])
        )
    install_web(app)  # home, API documentation, dashboard (web/)
    # Outermost: everything after it sees the client, scheme and host a trusted proxy forwarded.
    app.add_middleware(ForwardedMiddleware, trusted=settings.trusted_proxies)
    return app


def end_streams(app: FastAPI) -> None:
    """The server is stopping: end the phones' and the dashboard's event streams now (both
    reconnect by themselves), rather than have the stop wait for them."""
    context: AppContext | None = getattr(app.state, "context", None)
    if context is None:  # not started
        return
    context.hub.end_streams()
    feed_of(context.db).end_all()


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
