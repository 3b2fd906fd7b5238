"""Behind a reverse proxy: who called, over which scheme, at which host name.

A TLS proxy in front of smsgw connects over plain HTTP from its own address. From the peers
listed in SMSGW_FORWARDED_ALLOW_IPS (loopback by default) smsgw believes `X-Forwarded-For`
(the client's address: `externalIp`, the per-address throttles), `X-Forwarded-Proto` (the URLs
it hands out are `https://`) and `X-Forwarded-Host` (the host name the client used). Any other
peer's forwarded headers are ignored, so a client cannot pick its own address.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:  # settings import this module: it stays light to import (the CLI)
    from starlette.types import ASGIApp, Receive, Scope, Send

DEFAULT_TRUSTED = "127.0.0.1,::1"
#: A host name or address with an optional port, nothing that could change a URL's meaning.
HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


def parse_trusted(value: str) -> list[str]:
    """The entries of a SMSGW_FORWARDED_ALLOW_IPS value: `*`, addresses or networks (CIDR).
    ValueError names the first entry that is none of these."""
    entries = [item.strip() for item in value.split(",") if item.strip()]
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address, a network such as 10.0.0.0/8, or *"
            ) from None
    return entries


class ForwardedMiddleware:
    """Rewrite the request's client, scheme and Host from a trusted proxy's X-Forwarded-*
    headers (the client and scheme by uvicorn's own middleware, the host here)."""

    def __init__(self, app: ASGIApp, trusted: list[str]) -> None:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        self.app = app
        self.proxy = ProxyHeadersMiddleware(app, trusted_hosts=trusted)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            if client and client[0] in self.proxy.trusted_hosts:
                _use_forwarded_host(scope)
            await self.proxy(scope, receive, send)  # type: ignore[arg-type]
            return
        await self.app(scope, receive, send)


def _use_forwarded_host(scope: Scope) -> None:
    """Host := the first X-Forwarded-Host (the one the client asked for), when well formed."""
    forwarded = next((v for k, v in scope["headers"] if k == b"x-forwarded-host"), None)
    if forwarded is None:
        return
    host = forwarded.decode("latin-1").split(",")[0].strip()
    if not HOST.match(host):
        return
    headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
    headers.append((b"host", host.encode("latin-1")))
    scope["headers"] = headers


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refused_by_phones(url: str) -> bool:
    """True when the Android app would refuse `url` as a webhook target: plain http:// to
    anything but a loopback host (its release build allows cleartext to 127.0.0.1 only)."""
    parts = urlsplit(url)
    return parts.scheme == "http" and not is_loopback_host(parts.hostname or "")
