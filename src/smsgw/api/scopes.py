"""The one table of the scope each 3rd-party route needs, and how a request finds its own.

Keys are (method, path template relative to the 3rd-party prefix, as the route declares
it). `PUBLIC` routes need no credentials. A 3rd-party route missing from the table needs
`all:any` (Basic credentials, or a token with the wildcard): new routes fail closed, and
tests/test_scopes.py fails until the route is listed here. The guard on the 3rd-party router
(deps.authorize) applies it to every request.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.routing import compile_path

from smsgw.tokens.scopes import ALL, MANAGE, REFRESH

PUBLIC = ""
THIRDPARTY_MARK = "/3rdparty/v1"

ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("POST", "/messages"): "messages:send",
    ("POST", "/batch/messages"): "messages:send",
    ("GET", "/messages"): "messages:list",
    ("GET", "/messages/{id}"): "messages:read",
    ("DELETE", "/messages/{id}"): "messages:cancel",
    ("POST", "/messages/inbox/export"): "messages:export",
    ("POST", "/message"): "messages:send",
    ("GET", "/message"): "messages:list",
    ("GET", "/message/{id}"): "messages:read",
    ("DELETE", "/message/{id}"): "messages:cancel",
    ("GET", "/devices"): "devices:list",
    ("DELETE", "/devices/{id}"): "devices:delete",
    ("PATCH", "/devices/{id}"): "devices:write",
    ("GET", "/device"): "devices:list",
    ("DELETE", "/device/{id}"): "devices:delete",
    ("PATCH", "/device/{id}"): "devices:write",
    ("GET", "/links"): "devices:list",
    ("GET", "/links/{id}"): "devices:list",
    ("POST", "/links"): "devices:write",
    ("DELETE", "/links/{id}"): "devices:delete",
    ("GET", "/webhooks"): "webhooks:list",
    ("POST", "/webhooks"): "webhooks:write",
    ("DELETE", "/webhooks/{id}"): "webhooks:delete",
    ("GET", "/webhooks/{id}/deliveries"): "webhooks:list",
    ("GET", "/webhooks/signing/key"): "webhooks:write",  # a secret: not for list-only tokens
    ("POST", "/webhooks/signing/key"): "webhooks:write",
    ("GET", "/inbox"): "inbox:list",
    ("GET", "/inbox/{id}/attachments/{partId}"): "inbox:list",
    ("POST", "/inbox/refresh"): "inbox:refresh",
    ("GET", "/exports/messages"): "messages:list",
    ("GET", "/exports/inbox"): "inbox:list",
    ("GET", "/opt-outs"): "opt-outs:list",
    ("POST", "/opt-outs"): "opt-outs:write",
    ("DELETE", "/opt-outs/{phoneNumber}"): "opt-outs:write",
    ("GET", "/settings"): "settings:read",
    ("PATCH", "/settings"): "settings:write",
    ("PUT", "/settings"): "settings:write",
    ("GET", "/links/routing"): "settings:read",
    ("PUT", "/links/routing"): "settings:write",
    ("GET", "/logs"): "logs:read",
    ("POST", "/auth/token"): MANAGE,
    ("POST", "/auth/token/refresh"): REFRESH,
    ("DELETE", "/auth/token/{jti}"): MANAGE,
    ("POST", "/auth/keys"): MANAGE,
    ("GET", "/auth/keys"): MANAGE,
    ("DELETE", "/auth/keys/{id}"): MANAGE,
    ("GET", "/health"): PUBLIC,
    ("GET", "/health/live"): PUBLIC,
    ("GET", "/health/ready"): PUBLIC,
    ("GET", "/health/startup"): PUBLIC,
}


_LITERAL = {key: scope for key, scope in ROUTE_SCOPES.items() if "{" not in key[1]}
_TEMPLATED = [
    (method, compile_path(template)[0], scope)
    for (method, template), scope in ROUTE_SCOPES.items()
    if "{" in template
]


def relative_path(path: str) -> str | None:
    """The part of a path (template or concrete) below the 3rd-party prefix; None outside."""
    _, mark, rest = path.partition(THIRDPARTY_MARK)
    return rest if mark else None


def scope_for(method: str, path: str) -> str:
    """The scope a `method` request to the concrete `path` needs (`PUBLIC`: none).

    Matched on the request's own path against the table's templates (literal ones first),
    the same way the router matched it, so it does not depend on how routes are nested.
    """
    method = "GET" if method == "HEAD" else method
    relative = relative_path(path)
    if relative is None:
        return ALL
    literal = _LITERAL.get((method, relative))
    if literal is not None:
        return literal
    for candidate, pattern, scope in _TEMPLATED:
        if candidate == method and pattern.match(relative):
            return scope
    return ALL


def required_scope(connection: HTTPConnection) -> str:
    """The scope this request to the 3rd-party API needs."""
    return scope_for(connection.scope.get("method", "GET"), connection.scope["path"])
