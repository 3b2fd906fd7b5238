"""The SSRF guard: outbound webhook requests never reach internal addresses.

URLs are checked when registered (scheme, literal addresses) and, since a name can resolve
to anything later, the address is checked again at connect time: the guarded session's
resolver resolves the host itself, refuses loopback, private, link-local, multicast,
reserved and cloud-metadata addresses, and the session connects to the address it checked
(TLS still verifies the name); a literal address, which aiohttp connects to without asking
the resolver, is checked before the request (`check_literal`).
`SMSGW_WEBHOOKS_ALLOW_PRIVATE_URLS=true` lifts all of this (and allows http://).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
import unicodedata
from collections.abc import Iterable
from urllib.parse import urlsplit

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from smsgw.domain.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH = 256
#: Metadata services that are not in a private range on every cloud.
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
BLOCKED_NAMES = {"localhost", "localhost.localdomain", "metadata.google.internal"}


class Refused(Exception):
    """The guard refused to connect (the message says to which address and why)."""


def why_refused(address: IPAddress) -> str | None:
    """Why `address` must not be reached, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour  # ::ffff:a.b.c.d, 2002:ab:cd::
        if embedded is not None and (reason := why_refused(embedded)) is not None:
            return reason
    checks = (
        (address in METADATA, "a cloud metadata address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    )
    return next((reason for hit, reason in checks if hit), None)


#: How a refused URL says what would allow it (the operator's setting).
ALLOW_HINT = "or the operator sets SMSGW_WEBHOOKS_ALLOW_PRIVATE_URLS=true"


def check_url(url: str, allow_private: bool) -> str:
    """Validate a webhook URL at registration; returns it, or raises InvalidInput."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"url: must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number from 0 to 65535
    except ValueError as error:
        raise InvalidInput(f"url: not a valid URL ({error})") from None
    scheme = parts.scheme.lower()
    spaced = any(c == " " or unicodedata.category(c) == "Cc" for c in url)  # or a control char
    if scheme not in ("http", "https") or not parts.hostname or spaced:
        raise InvalidInput("url: must be an absolute http(s) URL such as https://example.com/hook")
    if allow_private:
        return url
    if scheme != "https":
        raise InvalidInput(f"url: must start with https:// ({ALLOW_HINT} to allow http://)")
    host = _host_as_sent(url, parts.hostname)
    if host in BLOCKED_NAMES or host.endswith(".localhost"):
        raise InvalidInput(
            f"url: {host} is a local name; webhooks must reach a public host ({ALLOW_HINT})"
        )
    literal = _numeric_host(host)
    if literal is not None and (reason := why_refused(literal)) is not None:
        raise InvalidInput(
            f"url: {host} is {reason}; webhooks must reach a public host ({ALLOW_HINT})"
        )
    return url


def _host_as_sent(url: str, hostname: str) -> str:
    """The host as the request will name it: yarl's, which aiohttp connects to (IDNA
    mapped: `localhost` in full-width letters, or ending in an ideographic full stop, is
    `localhost`), in lower case and without a trailing dot."""
    try:
        host = URL(url).raw_host or hostname
    except ValueError:  # (a host yarl cannot encode: no request can be sent to it)
        host = hostname
    return host.lower().rstrip(".")


def _numeric_host(host: str) -> IPAddress | None:
    """The address a numeric host stands for, in any form the resolver accepts (also
    `2130706433`, `127.1`, `0x7f.1`); None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return None
    return ipaddress.ip_address(str(infos[0][4][0]).split("%", 1)[0]) if infos else None


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def all_allowed(host: str, addresses: Iterable[str]) -> list[str]:
    """The addresses, in order, when all are public; Refused naming the first that is not."""
    found = list(addresses)
    for text in found:
        reason = why_refused(ipaddress.ip_address(text.split("%", 1)[0]))
        if reason is not None:
            raise Refused(f"refused to connect to {host}: {text} is {reason}")
    if not found:
        raise Refused(f"refused to connect to {host}: it resolves to no address")
    return found


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver with the address check: the host's addresses, refused (Refused)
    unless every one is public; aiohttp connects to them in turn until one answers (a
    receiver with an address down is still reached, as without the guard). A failed look-up
    is no refusal: its OSError goes to aiohttp (ClientConnectorDNSError), as with the
    resolver of an unguarded session."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=address, port=port,
                          family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                          proto=0, flags=socket.AI_NUMERICHOST)
            for address in all_allowed(host, await resolve(host, port))
        ]  # fmt: skip

    async def close(self) -> None:
        pass


def check_literal(url: str) -> None:
    """Refused when `url`'s host is a literal address that is not public. aiohttp connects
    to what it takes for a literal (a host with a colon, or of digits and dots) without
    asking the resolver, and before 3.14 (aio-libs/aiohttp#12827) handed the socket the
    forms `ipaddress` does not read (`127.1`, `2130706433`, `0177.0.0.1`) as they are: they
    are read here as the socket reads them, and one that reads as no address is refused."""
    host = URL(url).raw_host or ""
    if ":" not in host and not host.replace(".", "").isdigit():
        return  # a name: the resolver checks it
    address = _numeric_host(host.split("%", 1)[0])
    reason = "not an address" if address is None else why_refused(address)
    if reason is not None:
        raise Refused(f"refused to connect to {host}: {host} is {reason}")


@functools.cache
def tls() -> ssl.SSLContext:
    """How webhook requests verify their receivers (httpx's default: certifi's authorities,
    or SSL_CERT_FILE / SSL_CERT_DIR), made once a process: reading the authorities takes
    30-40 ms, which each application's start paid twice. Shared safely: the sessions use it
    as it is, and httpx clients (the tests') set the same ALPN on it (HTTP/1.1 only)."""
    return httpx.create_ssl_context()


def session(allow_private: bool, timeout: float) -> aiohttp.ClientSession:
    """The session webhook requests go through (in a running event loop): guarded unless
    private URLs are allowed; `timeout` bounds the connect (at most 5 s) and each read.
    No cookies: one session carries every owner's requests, and a request goes out as it
    was signed (a cookie one receiver set would go to every webhook on its domain)."""
    connector = aiohttp.TCPConnector(
        ssl=tls(),
        resolver=None if allow_private else GuardedResolver(),
        use_dns_cache=False,
        # No cap of its own (aiohttp's is 100): the worker bounds the requests out
        # (SMSGW_WEBHOOKS_CONCURRENCY, up to 256), and a request waiting for a connection
        # counts the wait against its connect timeout.
        limit=0,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, connect=min(timeout, 5.0), sock_read=timeout),
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding",),
    )
