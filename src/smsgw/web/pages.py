"""Public pages: home, the API documentation, and the interactive (Swagger UI) explorer."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from smsgw.web.apidocs import GROUP_NOTES, groups_of, security_schemes
from smsgw.web.common import HERE, base_url, context_of, error_page, render

router = APIRouter()
API_PREFIX = "/api/3rdparty/v1"


LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


@router.get("/")
async def home(request: Request) -> Response:
    """The home page: what smsgw is, the first steps, and the address a phone is given
    (SMSGW_PUBLIC_URL, else this request's, with a word when a phone cannot reach that)."""
    base = base_url(request)
    public = context_of(request).settings.public_url is not None
    return render(
        request, "home.html", base=base, api=base + API_PREFIX, mobile_url=base + "/api/mobile/v1",
        public=public, loopback=not public and request.url.hostname in LOOPBACK_HOSTS,
    )  # fmt: skip


@router.get("/docs")
async def api_docs(request: Request) -> Response:
    schema = request.app.openapi()
    return render(
        request, "docs.html", base=base_url(request), api=base_url(request) + API_PREFIX,
        groups=groups_of(schema, base_url(request)), schemes=security_schemes(schema),
        notes=GROUP_NOTES,
        title=schema["info"]["title"], version=schema["info"]["version"],
    )  # fmt: skip


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    """The icon, for the browsers and tools that ask this address rather than the page's."""
    return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")


@router.get("/docs/interactive")
async def interactive_docs(request: Request) -> Response:
    return render(request, "swagger.html")


#: Registered after every other page (see web/__init__.py): an unknown dashboard address gets
#: a page that says so rather than the API's JSON answer.
fallback = APIRouter()


@fallback.get("/dashboard/{rest:path}")
async def unknown_page(request: Request, rest: str) -> Response:
    return error_page(request, 404, "There is no such page.")
