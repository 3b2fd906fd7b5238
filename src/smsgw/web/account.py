"""The dashboard's account page: change the password (the API's credentials change too)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from smsgw.accounts import service as accounts
from smsgw.accounts import signin
from smsgw.accounts.signin import BasicCredentials
from smsgw.domain.errors import DomainError, TooManyRequests, Unauthorized
from smsgw.web.common import (
    FORM_EXPIRED,
    Visitor,
    checked_form,
    client_address,
    redirect,
    render,
    visitor,
)

router = APIRouter()


def account_page(request: Request, who: Visitor, status: int = 200, **values: Any) -> Response:
    done = request.query_params.get("notice") == "password"
    notice = "Password changed. Your other sessions were signed out." if done else None
    return render(request, "account.html", status=status, who=who, notice=notice, **values)


@router.get("/dashboard/account")
async def show_account(request: Request) -> Response:
    return account_page(request, await visitor(request))


@router.post("/dashboard/account/password")
async def change_password(request: Request) -> Response:
    who = await visitor(request)
    form = await checked_form(request, who)
    if form is None:
        return account_page(request, who, 403, error=FORM_EXPIRED)
    current, new = str(form.get("current") or ""), str(form.get("new") or "")
    if new != form.get("confirm"):
        return account_page(request, who, 400, error="The new passwords do not match.")
    context = who.context
    try:  # throttled like every sign-in: a stolen session cannot guess the password
        await signin.authenticate_basic(
            context, client_address(request), BasicCredentials(who.login, current)
        )
    except Unauthorized:
        return account_page(request, who, 400, error="The current password is wrong.")
    except TooManyRequests as error:
        refused = account_page(request, who, 429, error=error.message.capitalize() + ".")
        refused.headers["Retry-After"] = str(error.retry_after)
        return refused
    try:
        await accounts.change_password(
            context.db, who.login, new, keep_session=who.session.token_hash
        )
    except DomainError as error:
        return account_page(request, who, 400, error=f"New password: {error.message}.")
    return redirect("/dashboard/account?notice=password")
