"""The dashboard's named API keys: list them, create one (the key shown once), revoke one.

The same service as the API's `/auth/keys` routes. A signed-in owner may grant any scope of
the catalogue (as Basic credentials may). A key is shown only in the answer to the form that
created it: never listed, logged or stored (its hash is).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from smsgw.apikeys import service as keys
from smsgw.domain import clock
from smsgw.domain.errors import DomainError, InvalidInput, NotFound, status_of
from smsgw.web.common import (
    FORM_EXPIRED,
    Visitor,
    checked_form,
    error_page,
    field,
    redirect,
    render,
    visitor,
)
from smsgw.web.tokens import CATALOGUE

router = APIRouter()
PAGE = "/dashboard/keys"
NOTICES = {"revoked": "API key revoked; it no longer works."}
#: The longest expiry the form offers: 100 years.
MAX_DAYS = 36_500


async def keys_page(request: Request, who: Visitor, status: int = 200, **values: Any) -> Response:
    values.setdefault("chosen", [])
    notice = NOTICES.get(request.query_params.get("notice", ""))
    now = clock.now()
    listed = [
        (row, keys.state_of(row, now))
        for row in await keys.list_for_user(who.context.db, who.user_id)
    ]
    return render(
        request, "keys.html", status=status, who=who, keys=listed, catalogue=CATALOGUE,
        notice=notice, max_days=MAX_DAYS, **values,
    )  # fmt: skip


@router.get(PAGE)
async def show_keys(request: Request) -> Response:
    return await keys_page(request, await visitor(request))


def parse_days(text: str) -> int | None:
    """The optional expiry in days; InvalidInput naming the field when it is not one."""
    if not text:
        return None
    if not re.fullmatch(r"[0-9]{1,6}", text) or not 1 <= int(text) <= MAX_DAYS:
        raise InvalidInput(f"Expires in days: give a whole number from 1 to {MAX_DAYS}")
    return int(text)


def _said(error: DomainError) -> str:
    """The service's message as the form says it: `name: ...` becomes `Name: ...`."""
    return error.message[:1].upper() + error.message[1:]


@router.post(PAGE)
async def create_key(request: Request) -> Response:
    who = await visitor(request)
    form = await checked_form(request, who)
    if form is None:
        return await keys_page(request, who, 403, error=FORM_EXPIRED)
    chosen = [value for value in form.getlist("scope") if isinstance(value, str)]
    name, days_text = field(form, "name"), field(form, "days")
    kept = {"chosen": chosen, "key_name": name, "days": days_text}
    try:
        days = parse_days(days_text)
        expires = clock.now() + timedelta(days=days) if days else None
        made = await keys.create(who.context.db, who.user_id, name, chosen, expires)
    except DomainError as error:
        return await keys_page(request, who, status_of(error), error=_said(error), **kept)
    return await keys_page(request, who, created=made)


@router.post(PAGE + "/{public_id}/revoke")
async def revoke_key(request: Request, public_id: str) -> Response:
    who = await visitor(request)
    if await checked_form(request, who) is None:
        return error_page(request, 403, FORM_EXPIRED, who)
    try:
        await keys.revoke(who.context.db, who.user_id, public_id)
    except NotFound:
        return error_page(request, 404, "No such API key of yours.", who)
    return redirect(PAGE + "?notice=revoked")
