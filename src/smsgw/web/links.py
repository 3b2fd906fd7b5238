"""The dashboard's carrier links: each link of the account with its session's state, queue
depth and the parts it submitted of late (links/activity.py); a form to add an SMPP link
(the CLI's rules: links/schemas.py, through the same service); delete; the account's routing
rule between its phones and its links, in words and as a form (web/routing_form.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from smsgw.domain.errors import DomainError, status_of
from smsgw.events.user_feed import notify
from smsgw.links import activity
from smsgw.links import service as links
from smsgw.links.schemas import TRANSCEIVER, TX_RX, SmppSettings, number_rule, problems
from smsgw.routing import rules
from smsgw.web import routing_form
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

router = APIRouter()
PAGE = "/dashboard/links"
NOTICES = {
    "added": "Link added: the server binds it within a few seconds (reload to see its state).",
    "deleted": "Link deleted.",
    "routed": "Routing rule saved: claims from now on follow it (a message a sender already "
    "took stays with it).",
}
NOT_YOURS = "No such link of yours."


@dataclass(frozen=True)
class Input:
    """A field of the add form: its name (SmppSettings' own), label, default (also what an
    empty field means); whether it takes a number (its rules: links/schemas.py)."""

    name: str
    label: str
    default: str = ""
    number: bool = False


FIELDS = (
    Input("name", "Name"),
    Input("host", "Host"),
    Input("port", "Port", "2775", True),
    Input("system_id", "System ID"),
    Input("password", "Password"),
    Input("system_type", "System type"),
    Input("source_addr", "Source address"),
    Input("source_ton", "Source TON", "5", True),
    Input("source_npi", "Source NPI", "0", True),
    Input("throughput", "Throughput (per second)", "10", True),
    Input("window", "Window", "10", True),
    Input("data_coding", "Data coding of texts", "0", True),
    Input("bind_mode", "Bind mode", TRANSCEIVER),
)
LABELS = {f.name: f.label for f in FIELDS}
DATA_CODINGS = (
    ("0", "0: SMSC default alphabet (GSM 03.38)"),
    ("1", "1: IA5 (ASCII)"),
    ("3", "3: Latin-1"),
)
BIND_MODES = {
    TRANSCEIVER: "transceiver: one session sends and receives",
    TX_RX: "tx_rx: a transmitter session sends, a receiver session receives",
}


async def links_page(request: Request, who: Visitor, status: int = 200, **values: Any) -> Response:
    values.setdefault("errors", {})
    values.setdefault("entered", {f.name: f.default for f in FIELDS})
    values.pop("password", None)
    db, rule = who.context.db, await rules.get(who.context.db, who.user_id)
    values.setdefault("routing", routing_form.shown(rule))
    values.setdefault("routing_errors", {})
    # the live updates fetch the table again (static/live.js)
    template = "_links_table.html" if request.query_params.get("fragment") else "links.html"
    return render(
        request, template, status=status, who=who, fields=LABELS, cap=activity.COUNT_CAP,
        links=await activity.of_user(db, who.user_id), codings=DATA_CODINGS,
        bind_modes=BIND_MODES,
        notice=NOTICES.get(request.query_params.get("notice", "")), modes=routing_form.MODES,
        rule=routing_form.in_words(rule), routing_labels=routing_form.LABELS,
        routing_help=routing_form.HELP, **values,
    )  # fmt: skip


@router.get(PAGE)
async def show_links(request: Request) -> Response:
    return await links_page(request, await visitor(request))


def _raw(form: FormData, name: str) -> str:
    """A field as typed (the password is not trimmed: its spaces are its own)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _whole(typed: str) -> bool:
    """Digits, few enough for int() (Python refuses more than 4,300) and for any rule."""
    return typed.isascii() and typed.isdigit() and len(typed) <= 18


def read_form(form: FormData) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings typed (numbers as numbers; an empty number field its default) and the
    problems of each field, by field name, in words ("a whole number from 1 to 65535")."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for spec in FIELDS:
        typed = _raw(form, spec.name) if spec.name == "password" else field(form, spec.name)
        if not spec.number:
            values[spec.name] = typed or spec.default
        elif _whole(typed or spec.default):
            values[spec.name] = int(typed or spec.default)
        else:
            values[spec.name] = int(spec.default)
            errors[spec.name] = number_rule(spec.name)
    for name, message in problems(values).items():
        errors.setdefault(name, message.partition(": ")[2] or message)
    return values, errors


@router.post(PAGE)
async def add_link(request: Request) -> Response:
    who = await visitor(request)
    form = await checked_form(request, who)
    if form is None:
        return await links_page(request, who, 403, error=FORM_EXPIRED)
    values, errors = read_form(form)
    entered = {f.name: field(form, f.name) for f in FIELDS if f.name != "password"}
    if errors:
        return await links_page(request, who, 400, errors=errors, entered=entered)
    name = values.pop("name")
    try:
        await links.add(who.context.db, who.user_id, who.login, name, SmppSettings(**values))
    except DomainError as error:
        wrong, _, message = error.message.partition(": ")
        errors = {wrong: message} if wrong in LABELS and message else {"host": error.message}
        return await links_page(request, who, status_of(error), errors=errors, entered=entered)
    notify(who.context.db, who.user_id)
    return redirect(f"{PAGE}?notice=added")


@router.post(PAGE + "/routing")
async def set_routing(request: Request) -> Response:
    """Set the signed-in account's routing rule (the same check as `PUT /links/routing`)."""
    who = await visitor(request)
    form = await checked_form(request, who)
    if form is None:
        return await links_page(request, who, 403, error=FORM_EXPIRED)
    typed = {name: field(form, name) for name in routing_form.LABELS}
    rule, errors = routing_form.read(typed)
    if rule is None:
        return await links_page(request, who, 400, routing=typed, routing_errors=errors)
    await rules.put(who.context.db, who.user_id, rule)
    return redirect(f"{PAGE}?notice=routed")


@router.post(PAGE + "/{device_id}/delete")
async def delete_link(request: Request, device_id: str) -> Response:
    who = await visitor(request)
    if await checked_form(request, who) is None:
        return error_page(request, 403, FORM_EXPIRED, who)
    try:
        await links.delete(who.context.db, device_id, who.user_id)
    except DomainError as error:
        return error_page(request, status_of(error), NOT_YOURS, who)
    who.context.forget_sender(device_id)
    notify(who.context.db, who.user_id)
    return redirect(f"{PAGE}?notice=deleted")
