"""Sign-in sessions of the dashboard and their CSRF tokens.

The cookie carries a random token; the database keeps only its SHA-256, the owner and a
CSRF token bound to the session (synchronizer pattern). Signing out deletes the row, so a
stolen cookie stops working at once. Before sign-in, the login form is protected by a
double-submit token (a random cookie repeated in the form).
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response

from smsgw.accounts.sessions import Session, end, end_all, lookup, start

__all__ = ["Session", "end", "end_all", "lookup", "start"]

SESSION_COOKIE = "smsgw_session"
LOGIN_CSRF_COOKIE = "smsgw_login_csrf"


def csrf_matches(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return secrets.compare_digest(expected.encode(), given.encode())


def is_https(request: Request) -> bool:
    """Served over https, directly or (per SMSGW_PUBLIC_URL) through a TLS proxy."""
    public = request.app.state.context.settings.public_url
    return request.url.scheme == "https" or bool(public and public.startswith("https://"))


def set_cookie(request: Request, response: Response, name: str, value: str, hours: int) -> None:
    """HttpOnly, SameSite=Lax, Secure when the page was served over https."""
    response.set_cookie(
        name,
        value,
        max_age=hours * 3600,
        httponly=True,
        samesite="lax",
        secure=is_https(request),
        path="/",
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=is_https(request))
