"""The dashboard's bulk send: upload a CSV file and a text with `{{column}}` placeholders,
check the preview (first rows, parts, invalid rows), confirm, and follow the batch's
progress on a page that survives a reload (bulk/service.py keeps it all in the database).

The uploaded file is read once, at upload: its checked rows are stored with the batch as a
preview of the owner's, kept an hour; confirming starts that stored batch, once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from smsgw.bulk import csvfile
from smsgw.bulk import service as bulk
from smsgw.bulk.repository import PREVIEW, SENDING
from smsgw.devices import service as devices
from smsgw.domain.errors import DomainError, InvalidInput, status_of
from smsgw.domain.states import ProcessingState
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
from smsgw.web.send import PRIORITIES

router = APIRouter()
PAGE = "/dashboard/bulk"
NOTICES = {
    "sending": "Confirmed: the messages are being queued.",
    "already": "This bulk send was confirmed already: nothing more was sent.",
    "discarded": "Preview discarded: nothing was sent.",
}
#: The states of the batch's messages, in the order the page shows them.
STATES = [
    s.value
    for s in (
        ProcessingState.PENDING, ProcessingState.PROCESSED, ProcessingState.SENT,
        ProcessingState.DELIVERED, ProcessingState.FAILED, ProcessingState.CANCELLING,
        ProcessingState.CANCELLED,
    )
]  # fmt: skip
#: Final states: a batch whose messages are all in one needs no more refreshing.
FINAL = {"Sent", "Delivered", "Failed", "Cancelled"}


async def form_page(request: Request, who: Visitor, status: int = 200, **values: Any) -> Response:
    values.setdefault("form", {})
    values.setdefault("notice", NOTICES.get(request.query_params.get("notice", "")))
    return render(
        request, "bulk.html", status=status, who=who, priorities=PRIORITIES,
        phones=await devices.list_devices(who.context.db, who.user_id),
        batches=await bulk.recent(who.context.db, who.user_id),
        max_rows=csvfile.MAX_ROWS, max_mib=csvfile.MAX_BYTES // (1024 * 1024), **values,
    )  # fmt: skip


@router.get(PAGE)
async def show_form(request: Request) -> Response:
    return await form_page(request, await visitor(request))


def _number(value: str, name: str, low: int, high: int) -> int | None:
    if not value:
        return None
    if not value.lstrip("-").isdigit() or not low <= int(value) <= high:
        raise InvalidInput(f"{name}: must be a whole number from {low} to {high}")
    return int(value)


async def _upload(form: FormData, who: Visitor) -> bulk.Upload:
    """The form as an upload; InvalidInput naming the field that is wrong."""
    file = form.get("file")
    if not isinstance(file, UploadFile) or not file.filename:
        raise InvalidInput("CSV file: choose a file to upload")
    content = await file.read(csvfile.MAX_BYTES + 1)
    device_id = field(form, "deviceId") or None
    phones = await devices.list_devices(who.context.db, who.user_id)
    if device_id is not None and device_id not in {phone.id for phone in phones}:
        raise InvalidInput("Phone: you have no such phone")
    return bulk.Upload(
        file_name=file.filename, content=content, text=str(form.get("text") or ""),
        device_id=device_id, sim_number=_number(field(form, "simNumber"), "SIM", 1, 3),
        priority=_number(field(form, "priority"), "Priority", -128, 127) or 0,
        with_delivery_report=form.get("withDeliveryReport") == "on",
    )  # fmt: skip


def _labelled(message: str) -> str:
    """`text: ...` reads `Text: ...`; a problem of the file is named as the file's."""
    if message.startswith("text: "):
        return "Text: " + message.removeprefix("text: ")
    if message.startswith(("SIM", "Priority", "Phone", "CSV")):
        return message
    return "CSV file: " + message


@router.post(PAGE)
async def upload(request: Request) -> Response:
    """Check the file and the text and keep them as a preview (nothing is sent yet)."""
    who = await visitor(request)
    form = await checked_form(request, who)
    if form is None:
        return await form_page(request, who, 403, error=FORM_EXPIRED)
    try:
        batch_id = await bulk.preview(
            who.context.db, who.context.settings.default_region, who.user_id,
            await _upload(form, who),
        )  # fmt: skip
    except DomainError as error:
        status = status_of(error)
        return await form_page(request, who, status, error=_labelled(error.message), form=form)
    return redirect(f"{PAGE}/{quote(batch_id)}")


@router.get(PAGE + "/{batch_id}")
async def show_batch(request: Request, batch_id: str) -> Response:
    """A preview to confirm, or the progress of a batch being (or once) sent."""
    who = await visitor(request)
    try:
        view = await bulk.view(who.context.db, who.user_id, batch_id)
    except DomainError as error:
        return error_page(request, status_of(error), error.message, who)
    fragment = bool(request.query_params.get("fragment"))
    template = "_bulk_progress.html" if fragment else "bulk_batch.html"
    queued = view.batch.accepted + view.batch.failed
    finished = sum(n for state, n in view.states.items() if state in FINAL)
    settled = view.batch.state not in (PREVIEW, SENDING) and finished == view.batch.accepted
    return render(
        request, template, who=who, view=view, batch=view.batch, states=STATES,
        queued=queued, finished=finished, settled=settled,
        notice=NOTICES.get(request.query_params.get("notice", "")),
        refresh=None if settled else (2 if view.batch.state == SENDING else 10),
    )  # fmt: skip


@router.post(PAGE + "/{batch_id}/send")
async def confirm(request: Request, batch_id: str) -> Response:
    """Start sending the preview, once: a second confirmation sends nothing more."""
    who = await visitor(request)
    if await checked_form(request, who) is None:
        return error_page(request, 403, FORM_EXPIRED, who)
    try:
        started = await bulk.confirm(who.context.db, who.user_id, batch_id)
    except DomainError as error:
        return error_page(request, status_of(error), error.message, who)
    if started and who.context.batches is not None:
        who.context.batches.start(batch_id)
    return redirect(f"{PAGE}/{quote(batch_id)}?notice={'sending' if started else 'already'}")


@router.post(PAGE + "/{batch_id}/discard")
async def discard(request: Request, batch_id: str) -> Response:
    who = await visitor(request)
    if await checked_form(request, who) is None:
        return error_page(request, 403, FORM_EXPIRED, who)
    try:
        await bulk.discard(who.context.db, who.user_id, batch_id)
    except DomainError as error:
        return error_page(request, status_of(error), error.message, who)
    return redirect(f"{PAGE}?notice=discarded")
