"""Routes of the messages API: parse, authenticate, call one service function, render."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from smsgw.accounts.errors import StaleCredentials
from smsgw.accounts.service import Recalled
from smsgw.api.deps import (
    Context,
    CurrentUser,
    authorize,
    authorize_recalled,
    context_of,
    current_user,
    unauthorize,
)
from smsgw.api.errors import QUERY_CHECKS
from smsgw.api.fastpath import json_body
from smsgw.domain.errors import DomainError, InvalidInput
from smsgw.domain.states import ProcessingState
from smsgw.events import signals
from smsgw.events.hub import Event, PhoneEvent
from smsgw.messages import service
from smsgw.messages.repository import ListFilter, MessageRecord
from smsgw.messages.schemas import (
    ErrorBody,
    Instant,
    MessageState,
    SendMessageRequest,
)
from smsgw.messages.wire import to_state
from smsgw.routing import service as routing


def _repeated_query_parameter(request: Request) -> None:
    """Every query parameter here takes one value: a repeated one is refused, not half-read."""
    for name in request.query_params:
        count = len(request.query_params.getlist(name))
        if count > 1:
            raise InvalidInput(f"{name}: give this query parameter once, not {count} times")


async def single_valued_query(request: Request) -> None:
    """The guard of every route here but `POST /messages` (which calls the check itself)."""
    _repeated_query_parameter(request)


router = APIRouter(tags=["Messages"])
#: The routes but `POST /messages` (which checks its query itself: see `SendOptions`).
GUARDED = [Depends(single_valued_query)]

SKIP_PHONE_VALIDATION = "Store the numbers as given, without checking them."
DEVICE_ACTIVE_WITHIN = "Hours: only accept if a (or the chosen) phone was seen this recently."


class SendOptions(BaseModel):
    """The query of `POST /messages`.

    Read by `send_options`, not declared as FastAPI query parameters: FastAPI solves declared
    parameters and dependencies on every request, and on the busiest route that cost about
    4% of its CPU (docs/performance.md). The OpenAPI document carries the same parameters
    (`SEND_PARAMETERS`, checked against FastAPI's own rendering by the tests).
    """

    skipPhoneValidation: bool = Field(False, description=SKIP_PHONE_VALIDATION)
    deviceActiveWithin: int = Field(0, ge=0, le=8760, description=DEVICE_ACTIVE_WITHIN)


_DEFAULT_OPTIONS = SendOptions()


def _read_options(request: Request) -> tuple[SendOptions, list[dict[str, Any]]]:
    """The query's options and FastAPI's errors for its parameters (located in `query`; the
    defaults go with errors); InvalidInput for a repeated parameter, as on every route here."""
    if not request.scope["query_string"]:
        return _DEFAULT_OPTIONS, []
    _repeated_query_parameter(request)
    try:
        return SendOptions.model_validate(dict(request.query_params)), []
    except ValidationError as exc:
        errors = [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]
        return _DEFAULT_OPTIONS, errors


async def send_options(request: Request) -> SendOptions:
    """The query's options, checked as FastAPI checks declared query parameters."""
    options, errors = _read_options(request)
    if errors:
        raise RequestValidationError(errors)
    return options


def send_query_errors(request: Request) -> list[dict[str, Any]]:
    """When the body of `POST /messages` failed validation (before the endpoint could read
    its query): the query's problems, which FastAPI would have found first, to answer with
    them as it did when the query was declared (a repeated parameter alone, else the query's
    errors before the body's)."""
    return _read_options(request)[1]


SEND_PARAMETERS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {**schema, "title": name.capitalize()},
        "description": schema["description"],
    }
    for name, schema in SendOptions.model_json_schema()["properties"].items()
]


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description, **extra}


#: What any route here can answer besides its own outcomes (see api/errors.py).
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("A parameter or the body is invalid or malformed; the message says which."),
    401: _error(
        "Missing or wrong credentials.",
        headers={
            "WWW-Authenticate": {"description": "The Basic scheme", "schema": {"type": "string"}}
        },
    ),
    413: _error("The request body is larger than the server accepts."),
    500: _error("An unexpected server error; it is logged."),
}
#: SQLite and PostgreSQL take an OFFSET up to a signed 64-bit integer.
MAX_OFFSET = 2**63 - 1
#: Upstream serves at most 100 messages a page: a larger `limit` is clamped, not refused.
MAX_PAGE = 100
MessageId = Annotated[str, Path(min_length=1, max_length=36, description="The message id.")]
#: What `after` is made of: a message's creation time (microseconds since the epoch, UTC)
#: and its key, base64url without padding; only this server's own cursors are taken.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"(-?\d{1,19})\.(\d{1,19})")
NOT_A_CURSOR = "after: not a cursor of this server (take it from a Link header's next URL)"


def cursor_of(record: MessageRecord) -> str:
    """The `after` value that continues a list after `record`."""
    at = record.created_at - EPOCH
    return _cursor((at.days * 86_400 + at.seconds) * 1_000_000 + at.microseconds, record.pk)


def position_of(cursor: str) -> tuple[datetime, int]:
    """The (creation time, key) a cursor names; InvalidInput when it is not one."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput(NOT_A_CURSOR) from None
    found = _CURSOR.fullmatch(text)
    if found is None or _cursor(int(found[1]), int(found[2])) != cursor:  # one form only
        raise InvalidInput(NOT_A_CURSOR)
    key = int(found[2])
    try:
        at = EPOCH + timedelta(microseconds=int(found[1]))
    except OverflowError:
        raise InvalidInput(NOT_A_CURSOR) from None
    if key > MAX_OFFSET:  # beyond the engines' integers
        raise InvalidInput(NOT_A_CURSOR)
    return at, key


def _cursor(micros: int, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{micros}.{pk}".encode()).decode().rstrip("=")


async def send_message(request: Request, body: SendMessageRequest) -> JSONResponse:
    """Queue an SMS. It is stored durably before this answers, and waits for a phone."""
    return await _send(request, body, None)


async def _send(
    request: Request, body: SendMessageRequest, recalled: Recalled | None
) -> JSONResponse:
    """`send_message`; with `recalled`, the caller's credentials as the cache holds them,
    confirmed as the message is stored (NotConfirmed when they are not, or when the send
    fails before it is stored: nothing is stored then, and the usual path answers)."""
    # The busiest route takes the context, the caller and its query from the request, not as
    # `Context`, `CurrentUser` and query parameters: FastAPI solves each of those on every
    # request (docs/performance.md). Same values: the router's guard authenticated the caller.
    options = await send_options(request)
    context = context_of(request)
    user_id = await current_user(request)
    command = service.SendCommand(
        phone_numbers=body.phoneNumbers,
        text=body.textMessage.text if body.textMessage else body.message,
        data=body.dataMessage.data if body.dataMessage else None,
        port=body.dataMessage.port if body.dataMessage else None,
        ext_id=body.id,
        device_id=body.deviceId,
        is_encrypted=body.isEncrypted,
        sim_number=body.simNumber,
        with_delivery_report=body.withDeliveryReport,
        priority=body.priority,
        ttl=body.ttl,
        valid_until=body.validUntil,
        schedule_at=body.scheduleAt,
        skip_phone_validation=options.skipPhoneValidation,
        device_active_within_hours=options.deviceActiveWithin,
    )
    try:
        record = await service.send(
            context.db, context.settings.default_region, user_id, command, recalled
        )
    except (DomainError, StaleCredentials) as exc:
        if recalled is None:
            raise
        raise NotConfirmed from exc
    location = f"{request.scope['path'].rstrip('/')}/{quote(record.id, safe='')}"
    if record.state == ProcessingState.PENDING:
        routing.wake_for_new(context.hub, user_id, record.device_id, context.settings.claim_cap)
    if any(r.error is not None for r in record.recipients):  # opted out: sms:failed is due
        context.signals.emit(signals.OUTBOX_FILLED)
    return JSONResponse(to_state(record, True), headers={"Location": location})


QUERY_CHECKS[send_message] = send_query_errors

_SEND = TypeAdapter(SendMessageRequest)


class NotConfirmed(Exception):
    """A send whose recalled credentials were not confirmed, or that failed before its
    message was stored: nothing of it was stored (`_send`)."""


async def fast_send(request: Request) -> Response | None:
    """`send_message` (api/fastpath.py) for a JSON body that validates (`json_body`) and no
    query: the router's guard first, as FastAPI runs it before the endpoint; anything else
    is FastAPI's to answer.

    Basic credentials that verified before are not read again (on PostgreSQL a round trip
    of its own): the send's transaction confirms them as it stores the message. If they no
    longer hold, or the send fails before storing anything, the request is authorized
    and sent again the usual way, so it gets the same answer, in the same order of checks
    (401 before any complaint about the body), as it would have. Any other failure is
    answered as it was, once the credentials are read and found to hold."""
    if request.scope["query_string"]:
        return None
    body = await json_body(request, _SEND)
    if body is None:
        return None
    recalled = authorize_recalled(request)
    if recalled is not None:
        try:
            return await _send(request, body, recalled)
        except NotConfirmed:
            unauthorize(request)  # nothing stored: sent again, the usual way
        except Exception:
            # Whether the message was kept may be unknown (a COMMIT cut short): it is not
            # sent again. But credentials that no longer hold are answered first, as ever.
            unauthorize(request)
            await authorize(request)
            raise
    await authorize(request)
    return await send_message(request, body)


async def list_messages(
    request: Request,
    context: Context,
    user_id: CurrentUser,
    skip: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_OFFSET,
            description="Messages to skip (seed name); give skip or offset, not both (unless "
            "equal).",
        ),
    ] = None,
    offset: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_OFFSET,
            description="Messages to skip (upstream name); give skip or offset, not both "
            "(unless equal).",
        ),
    ] = None,
    limit: Annotated[
        int,
        Query(ge=1, description="Page size; above 100 is served as 100 (`X-Limit` says so)."),
    ] = 20,
    since: Annotated[
        Instant | None, Query(alias="from", description="Created at or after (RFC 3339).")
    ] = None,
    until: Annotated[
        Instant | None, Query(alias="to", description="Created before (RFC 3339).")
    ] = None,
    state: Annotated[ProcessingState | None, Query(description="Only this state.")] = None,
    device_id: Annotated[
        str | None,
        Query(alias="deviceId", min_length=1, max_length=32, description="Only this phone's."),
    ] = None,
    sort: Annotated[
        Literal["created_at", "-created_at"], Query(description="Newest first by default.")
    ] = "-created_at",
    include_content: Annotated[
        bool, Query(alias="includeContent", description="Include text or data.")
    ] = False,
    after: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            pattern="^[A-Za-z0-9_-]+$",
            description="A cursor: the messages after the last one of the page that gave it, "
            'in the same order. Take it from the `Link` header\'s `rel="next"` URL, which '
            "keeps the other parameters; not with `skip` or `offset`.",
        ),
    ] = None,
) -> JSONResponse:
    """List your messages, newest first; `X-Total-Count` counts all that match. When more
    follow the page, `Link` gives the URL of the next one (`rel="next"`, with a cursor)."""
    if skip is not None and offset is not None and skip != offset:
        raise InvalidInput("skip and offset mean the same thing; give one of them")
    if after is not None and (skip or offset):
        raise InvalidInput("after continues from a cursor: give it without skip or offset")
    where = ListFilter(
        since=since,
        until=until,
        state=state.value if state else None,
        device_id=device_id,
        newest_first=sort == "-created_at",
        offset=skip if skip is not None else (offset or 0),
        limit=min(limit, MAX_PAGE),
        after=position_of(after) if after is not None else None,
    )
    records, total, more = await service.list_page(context.db, user_id, where)
    body = [to_state(record, include_content) for record in records]
    headers = {"X-Total-Count": str(total), "X-Limit": str(where.limit)}
    if more and records:
        url = request.url.remove_query_params(("skip", "offset", "after"))
        url = url.include_query_params(after=cursor_of(records[-1]))
        headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return JSONResponse(body, headers=headers)


async def get_message(context: Context, user_id: CurrentUser, id: MessageId) -> JSONResponse:
    """The full state of one message, with every recipient and the state history."""
    record = await service.get(context.db, user_id, id)
    return JSONResponse(to_state(record, True))


async def cancel_message(context: Context, user_id: CurrentUser, id: MessageId) -> JSONResponse:
    """Cancel a Pending message: Cancelled at once if no phone has it yet, else Cancelling.
    The message is not deleted: reading it afterwards answers its state."""
    record = await service.cancel(context.db, user_id, id)
    if record.state == ProcessingState.CANCELLING and record.device_id is not None:
        cancelled = Event(PhoneEvent.MESSAGE_CANCELLED, {"messageId": record.id})
        context.hub.publish({record.device_id}, cancelled)
    return JSONResponse(to_state(record, True))


def _register(prefix: str, deprecated: bool) -> None:
    total_header = {
        "X-Total-Count": {"description": "All matching messages", "schema": {"type": "integer"}},
        "X-Limit": {
            "description": "The page size served (at most 100)",
            "schema": {"type": "integer"},
        },
    }
    next_header = {
        "Link": {
            "description": 'When more messages follow the page: `<URL>; rel="next"`, the '
            "URL (its path and query) of the next page, with a cursor (`after`)",
            "schema": {"type": "string"},
        }
    }
    location = {"Location": {"description": "URL of the new message", "schema": {"type": "string"}}}
    router.add_api_route(
        prefix,
        send_message,
        methods=["POST"],
        response_model=MessageState,
        summary="Queue an SMS",
        deprecated=deprecated,
        operation_id=f"send{prefix.strip('/').title()}",
        openapi_extra={"parameters": SEND_PARAMETERS},
        responses={
            **COMMON_ERRORS,
            200: {"description": "Queued", "headers": location},
            409: _error("A message with this id already exists."),
        },
    )
    router.add_api_route(
        prefix,
        list_messages,
        methods=["GET"],
        response_model=list[MessageState],
        summary="List messages",
        deprecated=deprecated,
        operation_id=f"list{prefix.strip('/').title()}",
        dependencies=GUARDED,
        responses={
            **COMMON_ERRORS,
            200: {"description": "A page", "headers": total_header | next_header},
        },
    )
    router.add_api_route(
        f"{prefix}/{{id}}",
        get_message,
        methods=["GET"],
        response_model=MessageState,
        summary="Get a message's state",
        deprecated=deprecated,
        operation_id=f"get{prefix.strip('/').title()}",
        dependencies=GUARDED,
        responses={**COMMON_ERRORS, 404: _error("No such message of yours.")},
    )
    router.add_api_route(
        f"{prefix}/{{id}}",
        cancel_message,
        methods=["DELETE"],
        response_model=MessageState,
        summary="Cancel a pending message",
        deprecated=deprecated,
        operation_id=f"cancel{prefix.strip('/').title()}",
        dependencies=GUARDED,
        responses={
            **COMMON_ERRORS,
            404: _error("No such message of yours."),
            409: _error("The message is no longer pending."),
        },
    )


_register("/messages", deprecated=False)
_register("/message", deprecated=True)
#: (method, path under the prefix, fast path) for app.py to install.
FAST_PATHS = [("POST", path, fast_send) for path in ("/messages", "/message")]
