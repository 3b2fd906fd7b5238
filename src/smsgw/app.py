"""create_app(settings) -> the FastAPI application, with its lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from smsgw import __version__
from smsgw.accounts import service as accounts
from smsgw.accounts.passwords import CredentialCache
from smsgw.api.deps import AppContext
from smsgw.api.errors import BodyLimitMiddleware, install_handlers
from smsgw.api.thirdparty import build_router
from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.engine import Database

log = logging.getLogger("smsgw")

THIRDPARTY_PREFIXES = ("/api/3rdparty/v1", "/3rdparty/v1")


def announce_account(login: str, password: str) -> None:
    """Print the first account's credentials, once, where the operator sees them."""
    print(
        "\n"
        "  smsgw created the first account (shown only this once):\n"
        f"    login:    {login}\n"
        f"    password: {password}\n"
        "  Try: curl -u LOGIN:PASSWORD http://HOST:PORT/api/3rdparty/v1/messages\n",
        flush=True,
    )


def create_app(settings: Settings) -> FastAPI:
    """Build the application; the database is opened (and migrated) when it starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auto_migrate:
            await asyncio.to_thread(migrate.upgrade, settings)
        db = Database(settings)
        app.state.context = AppContext(
            settings=settings, db=db, credentials=CredentialCache(settings.credential_cache_size)
        )
        if settings.bootstrap_account:
            account = await accounts.bootstrap(db)
            if account is not None:
                announce_account(account.login, account.password)
        try:
            yield
        finally:
            await db.dispose()

    app = FastAPI(
        title="smsgw",
        version=__version__,
        description="Self-hosted SMS gateway. Auth: Basic (and JWT Bearer, coming).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        servers=[{"url": "/"}],
    )
    install_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    for prefix in THIRDPARTY_PREFIXES:
        app.include_router(
            build_router(), prefix=prefix, include_in_schema=prefix == THIRDPARTY_PREFIXES[0]
        )
    return app
