"""Public pages: home, the API documentation, and the interactive (Swagger UI) explorer."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from smsgw.web.apidocs import GROUP_NOTES, groups_of, security_schemes
from smsgw.web.common import base_url, error_page, render

router = APIRouter()
API_PREFIX = "/api/3rdparty/v1"


@router.get("/")
async def home(request: Request) -> Response:
    return render(request, "home.html", base=base_url(request), api=base_url(request) + API_PREFIX)


@router.get("/docs")
async def api_docs(request: Request) -> Response:
    schema = request.app.openapi()
    return render(
        request, "docs.html", base=base_url(request), api=base_url(request) + API_PREFIX,
        groups=groups_of(schema, base_url(request)), schemes=security_schemes(schema),
        notes=GROUP_NOTES,
        title=schema["info"]["title"], version=schema["info"]["version"],
    )  # fmt: skip


@router.get("/docs/interactive")
async def interactive_docs(request: Request) -> Response:
    return render(request, "swagger.html")


#: Registered after every other page (see web/__init__.py): an unknown dashboard address gets
#: a page that says so rather than the API's JSON answer.
fallback = APIRouter()


@fallback.get("/dashboard/{rest:path}")
async def unknown_page(request: Request, rest: str) -> Response:
    return error_page(request, 404, "There is no such page.")
