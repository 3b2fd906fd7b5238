"""The SSRF guard: internal addresses are refused when registered and when connecting."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from pathlib import Path

import pytest

from smsgw.domain.errors import InvalidInput
from smsgw.webhooks.guard import Refused, check_literal, check_url, session, why_refused
from smsgw.webhooks.guard import tls as tls_context
from tests.conftest import Account, LiveServer, running
from tests.fakes.receiver import Receiver
from tests.webhook_support import Api, eventually, hub_settings, phone, run, started, until


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "not a public"),
        ("224.0.0.1", "multicast"),
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("2002:a9fe:a9fe::", "metadata"),  # 6to4 wrapping 169.254.169.254
    ],
)
def test_internal_addresses_are_refused(address: str, reason: str) -> None:
    refused = why_refused(ipaddress.ip_address(address))
    assert refused is not None and reason in refused


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_pass(address: str) -> None:
    assert why_refused(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1/hook", "https://[::1]:8443/hook", "http://169.254.169.254/"]
)
def test_a_literal_internal_address_is_refused_before_the_request(url: str) -> None:
    """aiohttp connects to a literal address without asking the resolver: the guarded
    request checks it itself (a URL registered while private URLs were allowed)."""
    with pytest.raises(Refused, match="refused to connect to"):
        check_literal(url)


@pytest.mark.parametrize(
    "host",
    ["2130706433", "127.1", "017700000001", "0177.0.0.1", "127.000.000.001", "0", "1.2.3.4.5"],
)
def test_a_legacy_numeric_form_of_an_internal_address_is_refused_by_the_literal_check(
    host: str,
) -> None:
    """aiohttp takes any host of digits and dots for a literal address and skips the
    resolver for it; only since 3.14 (aio-libs/aiohttp#12827) does it refuse the forms
    `ipaddress` does not read, which the socket reads as 127.0.0.1 (`aiohttp>=3.10`). A
    host of digits and dots that reads as no address at all is refused too."""
    with pytest.raises(Refused, match=f"refused to connect to {host}: {host} is"):
        check_literal(f"https://{host}:8443/hook")


@pytest.mark.parametrize(
    "url", ["https://example.com/hook", "https://93.184.216.34/hook", "https://1.0.0.1.example/"]
)
def test_a_name_or_a_public_literal_passes_the_literal_check(url: str) -> None:
    check_literal(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/hook",  # full-width
        "https://localhost\u3002/hook",  # an ideographic full stop
        "https://\uff2c\uff2f\uff23\uff21\uff2c\uff28\uff2f\uff33\uff34./hook",
        "https://metadata.google.internal\u3002/computeMetadata/v1/",
    ],
)
def test_a_local_name_is_refused_at_registration_in_any_form_the_request_would_send(
    url: str,
) -> None:
    """The request's host is yarl's (IDNA maps full-width letters and the ideographic full
    stop), so the name check is made on it too."""
    with pytest.raises(InvalidInput, match="is a local name"):
        check_url(url, allow_private=False)


def _loopback_name() -> str | None:
    """A name other than localhost that resolves to a loopback address here, if any."""
    name = socket.gethostname()
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(name, 443)}
    except OSError:
        return None
    return name if addresses and all(a.startswith("127.") for a in addresses) else None


async def ping_once(live: LiveServer, owner: Account, url: str) -> dict[str, object]:
    """A phone's system:ping to a hook on `url`: the latest attempt to deliver it, once over."""
    api = Api(live, owner)
    await api.hook(url, "system:ping", id="h")
    device = await started(phone(live, owner), webhooks=5)
    device.ping()
    attempts: list[dict[str, object]] = []

    async def over() -> bool:
        attempts[:] = await api.deliveries("h")
        return bool(attempts) and attempts[-1]["finishedAt"] is not None

    await until(over)
    await device.stop()
    await api.close()
    return attempts[-1]


def test_a_name_resolving_to_loopback_is_refused_at_connect_time(tmp_path: Path) -> None:
    name = _loopback_name()
    if name is None:
        pytest.skip("this machine's host name does not resolve to loopback")
    receiver = Receiver().start()
    settings = hub_settings(tmp_path / "data", webhooks_allow_private_urls=False)
    with running(settings) as live:
        owner = live.create_user("owner")

        async def scenario() -> None:
            attempt = await ping_once(live, owner, f"https://{name}:{receiver.port}/hook")
            error = str(attempt["error"])
            assert error.startswith(f"refused to connect to {name}") and "loopback" in error
            assert attempt["statusCode"] is None
            await asyncio.sleep(0.5)
            assert receiver.requests == []  # not even a TLS handshake reached it

        try:
            run(scenario)
        finally:
            receiver.stop()


def test_plain_http_and_loopback_are_allowed_when_configured(tmp_path: Path) -> None:
    receiver = Receiver().start()
    with running(hub_settings(tmp_path / "data")) as live:
        owner = live.create_user("owner")

        async def scenario() -> None:
            api = Api(live, owner)
            await api.hook(receiver.url, "system:ping")
            device = await started(phone(live, owner), webhooks=5)
            device.ping()
            await eventually(lambda: len(receiver.delivered()) == 1)
            await device.stop()
            await api.close()

        try:
            run(scenario)
        finally:
            receiver.stop()


#: A certificate for 127.0.0.1 that no authority signed (made with `openssl req -x509 -newkey
#: ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500 -subj /CN=127.0.0.1 -addext
#: subjectAltName=IP:127.0.0.1`).
SELF_SIGNED = Path(__file__).parent / "fakes" / "tls"


def test_a_receiver_whose_certificate_no_authority_signed_is_refused(tmp_path: Path) -> None:
    """Webhook requests verify the receiver's certificate (the transports of every
    application share one TLS context, made once a process): a receiver on HTTPS with a
    self-signed certificate gets no request, and the attempt says why."""
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(SELF_SIGNED / "self-signed.crt", SELF_SIGNED / "self-signed.key")
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):  # (the client gives up during the handshake)
            requests.append(await reader.readline())
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    with running(hub_settings(tmp_path / "data")) as live:  # private URLs allowed
        owner = live.create_user("owner")

        async def scenario() -> None:
            server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
            port = server.sockets[0].getsockname()[1]
            attempt = await ping_once(live, owner, f"https://127.0.0.1:{port}/hook")
            assert "CERTIFICATE_VERIFY_FAILED" in str(attempt["error"])
            assert attempt["statusCode"] is None
            assert requests == []
            server.close()

        run(scenario)


def test_the_sessions_share_one_tls_context() -> None:
    async def scenario() -> None:
        async with session(True, 5) as one, session(False, 5) as other:
            assert one.connector._ssl is other.connector._ssl is tls_context()  # type: ignore[union-attr]

    asyncio.run(scenario())
