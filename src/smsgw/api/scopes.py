"""The one table of the scope each 3rd-party route needs, and how a request finds its own.

Keys are (method, path template relative to the 3rd-party prefix, as the route declares
it). `PUBLIC` routes need no credentials. A 3rd-party route missing from the table needs
`all:any` (Basic credentials, or a token with the wildcard): new routes fail closed, and
tests/test_scopes.py fails until the route is listed here.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute

from smsgw.tokens.scopes import ALL, MANAGE, REFRESH

PUBLIC = ""
THIRDPARTY_MARK = "/3rdparty/v1"

ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("POST", "/messages"): "messages:send",
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
    ("GET", "/device"): "devices:list",
    ("DELETE", "/device/{id}"): "devices:delete",
    ("GET", "/webhooks"): "webhooks:list",
    ("POST", "/webhooks"): "webhooks:write",
    ("DELETE", "/webhooks/{id}"): "webhooks:delete",
    ("GET", "/webhooks/{id}/deliveries"): "webhooks:list",
    ("GET", "/inbox"): "inbox:list",
    ("POST", "/inbox/refresh"): "inbox:refresh",
    ("GET", "/settings"): "settings:read",
    ("PATCH", "/settings"): "settings:write",
    ("PUT", "/settings"): "settings:write",
    ("GET", "/logs"): "logs:read",
    ("POST", "/auth/token"): MANAGE,
    ("POST", "/auth/token/refresh"): REFRESH,
    ("DELETE", "/auth/token/{jti}"): MANAGE,
    ("GET", "/health"): PUBLIC,
    ("GET", "/health/live"): PUBLIC,
    ("GET", "/health/ready"): PUBLIC,
    ("GET", "/health/startup"): PUBLIC,
}


def relative_path(route_path: str) -> str | None:
    """The path template below the 3rd-party prefix; None for a route outside that API."""
    _, mark, rest = route_path.partition(THIRDPARTY_MARK)
    return rest if mark else None


def scope_for(method: str, route: BaseRoute | None) -> str:
    """The scope a request to `route` with `method` needs (`PUBLIC`: none)."""
    path = getattr(route, "path", None)
    relative = relative_path(path) if isinstance(path, str) else None
    if relative is None:
        return ALL
    return ROUTE_SCOPES.get(("GET" if method == "HEAD" else method, relative), ALL)


def required_scope(connection: HTTPConnection) -> str:
    """The scope the matched route of this request needs."""
    return scope_for(connection.scope.get("method", "GET"), connection.scope.get("route"))
