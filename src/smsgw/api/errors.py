"""The one error catalog: which status each error kind gets, and one `{"message"}` renderer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smsgw.api.redact import redact
from smsgw.db.engine import is_nul_refused
from smsgw.domain.errors import (
    DomainError,
    TooManyRequests,
    status_of,
)

log = logging.getLogger("smsgw.api")

UNAUTHORIZED = "Unauthorized"
NOT_FOUND = "Not Found"
INTERNAL = "internal server error"
NUL_REFUSED = "text must not contain the NUL character (U+0000)"
PROBED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Basic realm="smsgw", charset="UTF-8"'}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def describe_validation(errors: list[dict[str, Any]], content_type: str) -> str:
    """One readable line naming each field that is wrong."""
    lines = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if error.get("type") == "json_invalid":
            detail = error.get("ctx", {}).get("error", "invalid JSON")
            return f"malformed JSON body: {detail}"
        where, field = (loc[0], loc[1:]) if loc else ("body", ())
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if where == "body" and not field and "json" not in content_type:
            return "request body must be JSON sent with Content-Type: application/json"
        if where == "body" and not field and error.get("type") == "missing":
            return "request body is required"
        lines.append(f"{_field_path(field)}: {message}" if field else message)
    return "; ".join(lines) or "invalid request"


async def domain_error_response(_request: Request, exc: Exception) -> JSONResponse:
    """The answer to a DomainError (the application's handler of them)."""
    assert isinstance(exc, DomainError)
    status = status_of(exc)
    headers = WWW_AUTHENTICATE if status == 401 else None
    if isinstance(exc, TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after)}
    return error_response(status, exc.message, headers)


#: Endpoints that read their query themselves (not as declared FastAPI parameters), with
#: what is wrong in it: when their body fails validation, the endpoint never ran, and the
#: answer names the query's problems first, as FastAPI's own validation would.
QUERY_CHECKS: dict[Any, Callable[[Request], list[dict[str, Any]]]] = {}


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    check = QUERY_CHECKS.get(request.scope.get("endpoint"))
    if check is not None and all(tuple(e.get("loc", ()))[:1] != ("query",) for e in errors):
        try:
            errors = check(request) + errors
        except DomainError as problem:  # a repeated query parameter, refused before anything
            return await domain_error_response(request, problem)
    content_type = request.headers.get("content-type", "").lower()
    return error_response(400, describe_validation(errors, content_type))


async def _on_too_large(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyTooLarge)
    return error_response(413, exc.message)


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path.

    Starlette's 405 names only the first route that matched the path, but GET and DELETE of
    one path are separate routes here; so ask every route about every method instead.
    """
    routes: list[BaseRoute] = request.app.router.routes
    allowed = [
        method
        for method in PROBED_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


def unreadable_body(cause: ValueError | RecursionError) -> str:
    """What is wrong with a JSON body the parser gave up on (beyond a syntax error)."""
    if isinstance(cause, RecursionError):
        return "malformed JSON body: nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return "malformed JSON body: not UTF-8 text"
    if "digits" in str(cause):  # int() refuses numbers of more than 4,300 digits
        return "malformed JSON body: a number with too many digits"
    return "malformed JSON body"


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI wraps body-reading errors
        return await _on_too_large(request, exc.__cause__)
    message = exc.detail if isinstance(exc.detail, str) else NOT_FOUND
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
        message = unreadable_body(exc.__cause__)  # FastAPI says only "error parsing the body"
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and (allowed := allowed_methods(request)):
        headers["Allow"] = allowed
    return error_response(exc.status_code, message, headers or None)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    path = redact(request.url.path)
    log.exception("unhandled error on %s %s", request.method, path, exc_info=exc)
    return error_response(500, INTERNAL)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, domain_error_response)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(BodyTooLarge, _on_too_large)
    app.add_exception_handler(Exception, _on_unexpected)


class BodyTooLarge(Exception):
    """Raised while reading a request body that grows past the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.message = f"request body too large: the limit is {limit} bytes"


class BodyLimitMiddleware:
    """Answer 413 to a request body over `limit` bytes, whether declared or streamed; a path
    starting with one of `wider`'s prefixes gets that prefix's limit instead (phones' MMS
    posts, the dashboard's CSV uploads)."""

    def __init__(self, app: ASGIApp, limit: int, wider: Sequence[tuple[str, int]] = ()) -> None:
        self.app = app
        self.limit = limit
        self.wider = list(wider)

    def _limit_of(self, path: str) -> int:
        for prefix, limit in self.wider:
            if path.startswith(prefix):
                return limit
        return self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_of(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await error_response(413, BodyTooLarge(limit).message)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
            return message

        await self.app(scope, counting_receive, send)


class UnexpectedErrorMiddleware:
    """Answer an unexpected exception with 500 `{"message"}`, logged, and keep the connection.

    Starlette's outermost handler answers 500 too, but then raises the exception again, and
    uvicorn closes a connection whose application raised: the client's next request on that
    keep-alive connection would fail. Installed inside the metrics, which count the 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:
            if started:  # too late for an answer: let the server end the connection
                raise
            if is_nul_refused(exc):  # bad input, on PostgreSQL only: its text cannot hold it
                await error_response(400, NUL_REFUSED)(scope, receive, send)
                return
            log.exception("unhandled error on %s %s", scope["method"], redact(scope["path"]))
            await error_response(500, INTERNAL)(scope, receive, send)
