"""Serve a hot route's well-formed requests without FastAPI's per-request machinery.

A delivered message costs a phone about four requests (a share of a pull, three state
reports), most of which change little or nothing. Through FastAPI, each paid for its
dependency solving, body handling and response wrapping, and for the layers between the
application's own middlewares and the endpoint (exception handling, FastAPI's exit stacks,
the router's matching): together more than the work itself (docs/performance.md).

A *fast path* is a function that takes the request and answers it the way the route's
endpoint would, calling that very endpoint with arguments it read itself, or returns None
when the request is not the plain case it knows (a missing or odd header, a body that does
not validate, a token that does not authenticate, ...). `FastLane`, the innermost of the
application's middlewares, gives a request to the fast path of its route (by exact method
and path) and, on None, passes it on down the stack with its body replayed: every answer to
a bad request (status, message, order of the checks) is FastAPI's own, and only the plain
case is served directly. The middlewares around the lane (forwarded headers, metrics, body
limits, unexpected errors) see every request as before; the route stays a FastAPI route, with
its OpenAPI operation, and serves whatever the lane passes on.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smsgw.api.errors import domain_error_response
from smsgw.domain.errors import DomainError

#: Reads the request (its body, except a GET's, is already buffered: `await request.body()`
#: is free) and answers it, or returns None to leave it to the route's FastAPI handler.
FastHandler = Callable[[Request], Awaitable[Response | None]]
T = TypeVar("T")


@dataclass
class FastPaths:
    """The fast paths of an application, by (method, exact path): filled by `serve_fast`."""

    lanes: dict[tuple[str, str], tuple[APIRoute, FastHandler]] = field(default_factory=dict)


def serve_fast(
    app: FastAPI, paths: FastPaths, method: str, at: set[str], fast: FastHandler
) -> None:
    """Give the FastAPI routes of `method` at the paths `at` the fast path `fast`. Raises
    LookupError when a path has no such route (a renamed route must not silently lose its
    fast path)."""
    for path in at:
        route = _routed(app, method, path)
        if route is None:
            raise LookupError(f"no {method} route serves {path} first")
        paths.lanes[method, path] = (route, fast)


def _routed(app: FastAPI, method: str, path: str) -> APIRoute | None:
    """The FastAPI route the router gives `method path` to, if it is one with exactly that
    path (a route of a pattern matching it first would make the lane serve another route)."""
    scope: Scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route if isinstance(route, APIRoute) and route.path == path else None
    return None


async def json_body(request: Request, adapter: TypeAdapter[T]) -> T | None:
    """The request's JSON body, validated by `adapter`, read as FastAPI reads a body
    (json.loads, then validation: a fast path takes exactly what FastAPI takes). None when
    the content type is not JSON or the body does not parse (even too deep to) or validate:
    FastAPI's 400 says why."""
    content_type = request.headers.get("content-type", "")
    if content_type.partition(";")[0].strip().lower() != "application/json":
        return None
    try:
        return adapter.validate_python(json.loads(await request.body()))
    except Exception:
        return None


class FastLane:
    """The middleware that serves requests by their route's fast path (module docstring).
    Only exact paths take it, each one a path the router gives to that very route
    (`serve_fast` checked), so the lane never serves a request another route would have."""

    def __init__(self, app: ASGIApp, paths: FastPaths) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = None
        if scope["type"] == "http" and not scope.get("root_path"):
            lane = self.paths.lanes.get((scope["method"], scope["path"]))
        if lane is None:
            await self.app(scope, receive, send)
            return
        route, fast = lane
        # A GET's body, if any, is not read (nor waited for): the route never reads it.
        received, failure = ([], None) if scope["method"] == "GET" else await _receive_body(receive)
        response = None
        if failure is None and (not received or received[-1]["type"] == "http.request"):
            scope.update(route=route, endpoint=route.endpoint, path_params={})  # as routed
            request = _ReadRequest(scope, receive, b"".join(m.get("body", b"") for m in received))
            try:
                response = await fast(request)
            except DomainError as exc:  # as the application's handler answers it
                response = await domain_error_response(request, exc)
        if response is None:
            await self.app(scope, _replay(received, receive, failure), send)
        else:
            await response(scope, receive, send)


class _ReadRequest(Request):
    """A request whose body the lane has read already (a GET's, never read, is empty):
    Starlette's own cache of it (`_body`), which body(), stream(), json() and form() use."""

    def __init__(self, scope: Scope, receive: Receive, body: bytes) -> None:
        super().__init__(scope, receive)
        self._body = body


async def _receive_body(receive: Receive) -> tuple[list[Message], Exception | None]:
    """The messages that carry the request's body, up to its end, a disconnect, or an error
    raised while receiving (a body over the size limit: api/errors.BodyLimitMiddleware)."""
    received: list[Message] = []
    while True:
        try:
            message = await receive()
        except Exception as exc:
            return received, exc
        received.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return received, None


def _replay(messages: list[Message], receive: Receive, failure: Exception | None = None) -> Receive:
    """A `receive` that gives `messages` again, then raises `failure` (if any), then passes
    on what the connection says next: FastAPI meets what the fast path met, in order."""
    todo = list(messages)

    async def replayed() -> Message:
        nonlocal failure
        if todo:
            return todo.pop(0)
        if failure is not None:
            raised, failure = failure, None
            raise raised
        return await receive()

    return replayed
