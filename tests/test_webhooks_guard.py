"""The SSRF guard: internal addresses are refused when registered and when connecting."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path

import pytest

from smsgw.webhooks.guard import why_refused
from tests.conftest import running
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


def _loopback_name() -> str | None:
    """A name other than localhost that resolves to a loopback address here, if any."""
    name = socket.gethostname()
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(name, 443)}
    except OSError:
        return None
    return name if addresses and all(a.startswith("127.") for a in addresses) else None


def test_a_name_resolving_to_loopback_is_refused_at_connect_time(tmp_path: Path) -> None:
    name = _loopback_name()
    if name is None:
        pytest.skip("this machine's host name does not resolve to loopback")
    receiver = Receiver().start()
    settings = hub_settings(tmp_path / "data", webhooks_allow_private_urls=False)
    with running(settings) as live:
        owner = live.create_user("owner")

        async def scenario() -> None:
            api = Api(live, owner)
            await api.hook(f"https://{name}:{receiver.port}/hook", "system:ping", id="h")
            device = await started(phone(live, owner), webhooks=5)
            device.ping()
            attempts: list[dict[str, object]] = []

            async def refused() -> bool:
                attempts[:] = await api.deliveries("h")
                return bool(attempts) and attempts[-1]["finishedAt"] is not None

            await until(refused)
            error = str(attempts[-1]["error"])
            assert error.startswith(f"refused to connect to {name}") and "loopback" in error
            assert attempts[-1]["statusCode"] is None
            await asyncio.sleep(0.5)
            assert receiver.requests == []  # not even a TLS handshake reached it
            await device.stop()
            await api.close()

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
