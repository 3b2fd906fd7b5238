"""Sign in and sign out of the dashboard (same accounts and passwords as the API)."""

from __future__ import annotations

import secrets

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from smsgw.accounts import signin
from smsgw.accounts.signin import BasicCredentials
from smsgw.accounts.throttle import RateLimiter
from smsgw.domain.errors import TooManyRequests, Unauthorized
from smsgw.web import sessions
from smsgw.web.common import (
    FORM_EXPIRED,
    NotSignedIn,
    client_address,
    context_of,
    field,
    redirect,
    render,
    visitor,
)

router = APIRouter()
LOGIN_FORM_HOURS = 1
WRONG = "Wrong login or password."


def limiter(request: Request) -> RateLimiter:
    """Sign-in attempts per client address (a guess at a password costs a slow hash)."""
    return context_of(request).web_logins


def safe_next(target: str) -> str:
    """Only a local dashboard path: never an open redirect."""
    if target.startswith("/dashboard") and not target.startswith("//"):
        return target
    return "/dashboard"


def login_page(request: Request, status: int = 200, error: str | None = None) -> Response:
    token = request.cookies.get(sessions.LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    target = safe_next(request.query_params.get("next", ""))
    response = render(
        request, "login.html", status=status, login_csrf=token, error=error, next=target
    )
    sessions.set_cookie(request, response, sessions.LOGIN_CSRF_COOKIE, token, LOGIN_FORM_HOURS)
    return response


def refused(request: Request, error: TooManyRequests) -> Response:
    response = login_page(request, 429, f"Too {error.message.removeprefix('too ')}.")
    response.headers["Retry-After"] = str(error.retry_after)
    return response


@router.get("/dashboard/login")
async def show_login(request: Request) -> Response:
    try:
        await visitor(request)
        return redirect("/dashboard")
    except NotSignedIn:
        return login_page(request)


@router.post("/dashboard/login")
async def do_login(request: Request) -> Response:
    form = await request.form()
    expected = request.cookies.get(sessions.LOGIN_CSRF_COOKIE)
    given = form.get("csrf")
    if not sessions.csrf_matches(expected, given if isinstance(given, str) else None):
        return login_page(request, 403, FORM_EXPIRED)
    login, password = field(form, "login"), form.get("password")
    if not login or not isinstance(password, str) or not password:
        return login_page(request, 400, "Enter your login and password.")
    context = context_of(request)
    try:
        limiter(request).hit(client_address(request), "sign-in attempts")
        # The API's failed-sign-in throttle (per address and per login), shared with Basic.
        user_id = await signin.authenticate_basic(
            context, client_address(request), BasicCredentials(login, password)
        )
    except TooManyRequests as error:
        return refused(request, error)
    except Unauthorized:
        return login_page(request, 401, WRONG)
    token = await sessions.start(context.db, user_id, context.settings.web_session_hours)
    response = redirect(safe_next(field(form, "next")))
    sessions.set_cookie(
        request, response, sessions.SESSION_COOKIE, token, context.settings.web_session_hours
    )
    sessions.clear_cookie(request, response, sessions.LOGIN_CSRF_COOKIE)
    return response


@router.post("/dashboard/logout")
async def do_logout(request: Request) -> Response:
    who = await visitor(request)
    form = await request.form()
    given = form.get("csrf")
    if not sessions.csrf_matches(who.session.csrf_token, given if isinstance(given, str) else None):
        return render(request, "error.html", status=403, who=who, message=FORM_EXPIRED)
    await sessions.end(who.context.db, who.session)
    response = redirect("/dashboard/login?signed_out=1")
    sessions.clear_cookie(request, response, sessions.SESSION_COOKIE)
    return response
