"""The dashboard's account settings: what the owner's phones apply, edited on one form.

Saved through the same service as the API's `PATCH /settings` (so phones are told with
SettingsUpdated); only the fields that differ from the stored values are sent. Secrets are
write-only: the form can set or clear them but never shows them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from smsgw.accountsettings import service as account_settings
from smsgw.domain.errors import InvalidInput
from smsgw.web.common import FORM_EXPIRED, Visitor, checked_form, redirect, render, visitor
from smsgw.web.settings_form import FIELDS, SECTIONS, Posted, name_errors, read_form, shown_values

router = APIRouter()
NOTICES = {
    "saved": "Settings saved; your connected phones were told to fetch them.",
    "unchanged": "Nothing changed.",
}
NOT_SAVED = "Nothing was saved: correct the settings marked below."


def settings_page(
    request: Request, who: Visitor, values: dict[str, Any], status: int = 200, **extra: Any
) -> Response:
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return render(
        request, "settings.html", status=status, who=who, sections=SECTIONS, values=values,
        notice=notice, field_errors=extra.pop("field_errors", {}), **extra,
    )  # fmt: skip


@router.get("/dashboard/settings")
async def show_settings(request: Request) -> Response:
    who = await visitor(request)
    stored = await account_settings.get(who.context.db, who.user_id)
    return settings_page(request, who, shown_values(stored))


@router.post("/dashboard/settings")
async def save_settings(request: Request) -> Response:
    who = await visitor(request)
    form = await checked_form(request, who)
    context = who.context
    stored = await account_settings.get(context.db, who.user_id)
    if form is None:
        return settings_page(request, who, shown_values(stored), 403, error=FORM_EXPIRED)
    posted = read_form(form, stored)
    if posted.errors:
        return refused(request, who, posted, posted.errors, [])
    if not posted.change:
        return redirect("/dashboard/settings?notice=unchanged")
    try:
        await account_settings.update(
            context.db, context.hub, who.user_id, posted.change, replace=False
        )
    except InvalidInput as error:
        by_field, other = name_errors(error.message)
        return refused(request, who, posted, by_field, other)
    return redirect("/dashboard/settings?notice=saved")


def refused(
    request: Request, who: Visitor, posted: Posted, by_field: dict[str, str], other: list[str]
) -> Response:
    """The form again with what was typed, each wrong field named by its label."""
    named = [f"{FIELDS[name].label}: {problem}" for name, problem in by_field.items()]
    return settings_page(
        request, who, posted.shown, 400, error=NOT_SAVED, problems=named + other,
        field_errors=by_field,
    )  # fmt: skip
