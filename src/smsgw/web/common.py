"""What every web page shares: templates, the signed-in user, CSRF checks, error pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from smsgw import __version__
from smsgw.accounts import service as accounts
from smsgw.context import AppContext
from smsgw.domain.clock import format_timestamp
from smsgw.domain.errors import Unauthorized
from smsgw.messages.parts import count_parts
from smsgw.web import sessions
from smsgw.web.apidocs import markdown
from smsgw.web.sessions import Session

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["version"] = __version__
templates.env.filters["timestamp"] = lambda at: human_time(at) if at else ""
templates.env.filters["iso"] = lambda at: format_timestamp(at) if at else ""
templates.env.filters["markdown"] = markdown


def human_time(moment: datetime) -> str:
    """A moment for people: "2026-12-04 10:14:29 UTC" (the API's RFC 3339 is for programs,
    and goes in `<time datetime>`, the `iso` filter)."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment
    return f"{utc:%Y-%m-%d %H:%M:%S} UTC"


#: Characters of a text the lists show.
TEXT_START = 40


def text_start(text: str | None, length: int = TEXT_START) -> str:
    """The start of a text for a list: its first `length` characters on one line, with `…`
    when there is more (escaped by the template, as every value)."""
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= length else line[: length - 1].rstrip() + "…"


def conversation_url(number: str) -> str:
    """The dashboard's page of the conversation with `number` (any text, safely encoded)."""
    return "/dashboard/conversations/" + quote(number, safe="")


templates.env.filters["start"] = text_start
templates.env.filters["conversation_url"] = conversation_url
templates.env.filters["parts"] = count_parts

#: The dashboard's sections: (path, label); the layout renders whatever is here.
NAV: list[tuple[str, str]] = [
    ("/dashboard", "Overview"),
    ("/dashboard/messages", "Messages"),
    ("/dashboard/conversations", "Conversations"),
    ("/dashboard/send", "Send"),
    ("/dashboard/bulk", "Bulk send"),
    ("/dashboard/inbox", "Inbox"),
    ("/dashboard/phones", "Phones"),
    ("/dashboard/links", "Carrier links"),
    ("/dashboard/webhooks", "Webhooks"),
    ("/dashboard/opt-outs", "Opt-outs"),
    ("/dashboard/settings", "Settings"),
    ("/dashboard/tokens", "API tokens"),
    ("/dashboard/keys", "API keys"),
    ("/dashboard/account", "Account"),
]
#: Our pages load scripts and styles only from smsgw itself and cannot be framed (a framed
#: dashboard could be clicked through by another site). Swagger UI sets inline styles.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
FORM_EXPIRED = "This form has expired or came from another site. Reload the page and try again."


class NotSignedIn(Exception):
    """Raised by a page that needs a session; answered with a redirect to the sign-in page."""


@dataclass(frozen=True)
class Visitor:
    """A signed-in user of the dashboard."""

    context: AppContext
    session: Session
    login: str

    @property
    def user_id(self) -> int:
        return self.session.user_id


def context_of(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


def client_address(request: Request) -> str:
    """The client's address (as a trusted proxy forwarded it: forwarded.py)."""
    return request.client.host if request.client else "unknown"


def base_url(request: Request) -> str:
    """The server's address without a trailing slash: SMSGW_PUBLIC_URL, else as this request
    reached it."""
    public = context_of(request).settings.public_url
    return public or str(request.base_url).rstrip("/")


async def visitor(request: Request) -> Visitor:
    """The signed-in user, or NotSignedIn."""
    context = context_of(request)
    session = await sessions.lookup(context.db, request.cookies.get(sessions.SESSION_COOKIE))
    if session is None:
        raise NotSignedIn
    try:
        login = await accounts.login_of(context.db, session.user_id)
    except Unauthorized:
        raise NotSignedIn from None
    return Visitor(context, session, login)


async def checked_form(request: Request, who: Visitor) -> FormData | None:
    """The posted form if its CSRF token is this session's; None otherwise."""
    form = await request.form()
    given = form.get("csrf")
    ok = sessions.csrf_matches(who.session.csrf_token, given if isinstance(given, str) else None)
    return form if ok else None


def field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def render(
    request: Request, name: str, status: int = 200, who: Visitor | None = None, **values: Any
) -> HTMLResponse:
    values.update(request=request, who=who, nav=NAV, path=request.url.path)
    if who is not None:
        values["csrf"] = who.session.csrf_token
    response = templates.TemplateResponse(request, name, values, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(SECURITY_HEADERS)
    return response


def error_page(request: Request, status: int, message: str, who: Visitor | None = None) -> Response:
    return render(request, "error.html", status=status, who=who, message=message)


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/dashboard/login?next={quote(target, safe='')}", status_code=303)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
