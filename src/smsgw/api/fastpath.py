"""Serve a hot route's well-formed requests without FastAPI's per-request machinery.

A delivered message costs a phone about four requests (a share of a pull, three state
reports), most of which change little or nothing; FastAPI's dependency solving, body
handling and response wrapping cost each of them about 0.2-0.3 ms of the server's CPU, as
much as the work itself (docs/performance.md). A *fast path* is a function that takes the
request and answers it the way the route's endpoint would, calling that very endpoint with
arguments it read itself, or returns None when the request is not the plain case it knows
(a missing or odd header, a body that does not validate, ...). Then the route's FastAPI
handler serves the request as before, with its body replayed: every answer to a bad request
(status, message, order of the checks) is FastAPI's own, and only the plain case is served
directly. The route stays a FastAPI route: its matching, its OpenAPI operation and the
middlewares around it are unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Reads the request (its body is already buffered: `await request.body()` is free) and
#: answers it, or returns None to leave it to the route's FastAPI handler.
FastHandler = Callable[[Request], Awaitable[Response | None]]


class FastRoute:
    """The ASGI app of a route with a fast path: the fast handler first, FastAPI's after."""

    def __init__(self, fast: FastHandler, framework: ASGIApp) -> None:
        self.fast = fast
        self.framework = framework

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        received, failure = await _receive_body(receive)
        response = None
        if failure is None and received[-1]["type"] == "http.request":  # else: not plain
            body = b"".join(m.get("body", b"") for m in received)
            whole: Message = {"type": "http.request", "body": body, "more_body": False}
            response = await self.fast(Request(scope, _replay([whole], receive)))
        if response is None:
            await self.framework(scope, _replay(received, receive, failure), send)
        else:
            await response(scope, receive, send)


def serve_fast(app: FastAPI, method: str, paths: set[str], fast: FastHandler) -> None:
    """Give the FastAPI routes of `method` at `paths` the fast path `fast`. Raises LookupError
    when a path has no such route (a renamed route must not silently lose its fast path)."""
    found = set()
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.path in paths and method in (route.methods or ()):
            route.app = FastRoute(fast, route.app)
            found.add(route.path)
    if found != paths:
        raise LookupError(f"no {method} route at {sorted(paths - found)}")


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
