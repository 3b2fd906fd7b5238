"""Home page, API documentation and the dashboard: server-rendered, small hand-written JS."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import Response

from smsgw.web import (
    account,
    auth,
    bulk,
    conversations,
    exports,
    inbox,
    keys,
    links,
    live,
    messages,
    optouts,
    overview,
    pages,
    phones,
    send,
    settings,
    tokens,
    virtual,
    webhooks,
)
from smsgw.web.common import HERE, NotSignedIn, to_login


def build_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    for module in (
        pages,
        auth,
        overview,
        messages,
        conversations,
        exports,
        send,
        bulk,
        inbox,
        phones,
        links,
        virtual,
        webhooks,
        optouts,
        settings,
        tokens,
        keys,
        account,
        live,
    ):
        router.include_router(module.router)
    router.include_router(pages.fallback)
    return router


def install(app: FastAPI) -> None:
    """Mount the pages, our own static files and Swagger UI's (from its installed package)."""
    app.include_router(build_router())
    swagger = Path(str(files("fastapi_offline") / "static"))
    app.mount("/static/swagger", StaticFiles(directory=swagger), name="swagger")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    async def sign_in_first(request: Request, _exc: Exception) -> Response:
        return to_login(request)

    app.add_exception_handler(NotSignedIn, sign_in_first)
