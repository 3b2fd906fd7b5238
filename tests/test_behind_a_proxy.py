"""smsgw behind a TLS reverse proxy: X-Forwarded-* from trusted peers (SMSGW_FORWARDED_ALLOW_IPS)
decide the URLs phones are handed and the address every per-address throttle counts."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsgw.app import warn_of_plain_hooks
from smsgw.config import SettingsError, load_settings
from tests.clients import TLS
from tests.conftest import Account, LiveServer, make_settings, running
from tests.test_mobile_api import APP, MOBILE, basic, bearer, register
from tests.web_support import Dashboard

PROXIED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "sms.example.org"}


def serve(tmp_path: Path, **overrides: Any) -> Iterator[LiveServer]:
    values: dict[str, Any] = {"registration_rate_limit": 0, "code_failures_per_window": 1000}
    values.update(overrides)
    with running(make_settings(tmp_path / "data", **values)) as live:
        yield live


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[LiveServer]:
    """Reached through a proxy on this machine: loopback is trusted by default."""
    yield from serve(tmp_path)


@pytest.fixture
def untrusting(tmp_path: Path) -> Iterator[LiveServer]:
    """A server that trusts only a proxy elsewhere: loopback's forwarded headers are ignored."""
    yield from serve(tmp_path, forwarded_allow_ips="10.0.0.0/8")


def mobile(live: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=live.url + MOBILE, headers=APP, timeout=10, verify=TLS)


def registered(live: LiveServer, owner: Account) -> str:
    with mobile(live) as client:
        answer = register(client, basic(owner))
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return token


def hook_urls(live: LiveServer, token: str, headers: dict[str, str]) -> list[str]:
    with mobile(live) as client:
        answer = client.get("/webhooks", headers={**bearer(token), **headers})
    assert answer.status_code == 200, answer.text
    return [hook["url"] for hook in answer.json()]


def test_phones_are_handed_https_hook_urls_through_a_tls_proxy(proxied: LiveServer) -> None:
    token = registered(proxied, proxied.create_user("owner"))
    urls = hook_urls(proxied, token, PROXIED)
    assert urls and all(u.startswith(f"https://sms.example.org{MOBILE}/hooks/") for u in urls)
    # The proxy's port, when it forwards one, is kept.
    with_port = hook_urls(proxied, token, {**PROXIED, "X-Forwarded-Host": "sms.example.org:8443"})
    assert all(u.startswith("https://sms.example.org:8443/") for u in with_port)


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(untrusting: LiveServer) -> None:
    token = registered(untrusting, untrusting.create_user("owner"))
    urls = hook_urls(untrusting, token, {**PROXIED, "X-Forwarded-For": "203.0.113.7"})
    assert all(u.startswith(f"{untrusting.url}{MOBILE}/hooks/") for u in urls)
    with mobile(untrusting) as client:
        seen = client.get("/device", headers={"X-Forwarded-For": "203.0.113.7"}).json()
    assert seen["externalIp"] == "127.0.0.1"


def test_a_malformed_forwarded_host_is_not_used(proxied: LiveServer) -> None:
    token = registered(proxied, proxied.create_user("owner"))
    bad = {**PROXIED, "X-Forwarded-Host": "evil.example/path?x="}
    assert all(u.startswith("https://127.0.0.1:") for u in hook_urls(proxied, token, bad))


def test_external_ip_is_the_forwarded_client(proxied: LiveServer) -> None:
    with mobile(proxied) as client:
        seen = client.get("/device", headers={"X-Forwarded-For": "203.0.113.7"}).json()
        assert seen["externalIp"] == "203.0.113.7"
        # Several proxies: the nearest untrusted one is the client.
        chain = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 127.0.0.1"}
        assert client.get("/device", headers=chain).json()["externalIp"] == "203.0.113.9"


def test_the_sign_in_throttle_counts_each_forwarded_client_apart(tmp_path: Path) -> None:
    for live in serve(tmp_path, auth_failures_per_address=3, auth_failures_per_login=1000):
        live.create_user("owner")
        first, second = ({"X-Forwarded-For": ip} for ip in ("203.0.113.1", "203.0.113.2"))
        with live.client(Account("owner", "wrong")) as api:
            assert [api.get("/messages", headers=first).status_code for _ in range(3)] == [401] * 3
            assert api.get("/messages", headers=first).status_code == 429
            # Another client behind the same proxy is not blocked by the first one's guesses.
            assert api.get("/messages", headers=second).status_code == 401


def test_registrations_are_limited_per_forwarded_client(tmp_path: Path) -> None:
    for live in serve(tmp_path, registration_rate_limit=2):
        with mobile(live) as client:
            first, second = ({"X-Forwarded-For": ip} for ip in ("203.0.113.1", "203.0.113.2"))
            assert [register(client, first).status_code for _ in range(2)] == [401, 401]
            assert register(client, first).status_code == 429
            assert register(client, second).status_code == 401


def test_the_phones_page_warns_when_phones_would_get_plain_http(proxied: LiveServer) -> None:
    web = Dashboard(proxied)
    web.sign_in(proxied.create_user("owner"))
    plain = web.http.get("/dashboard/phones", headers={"X-Forwarded-Host": "sms.example.org"})
    assert 'id="plain-http-warning"' in plain.text
    assert "http://sms.example.org/api/mobile/v1" in plain.text
    secure = web.http.get("/dashboard/phones", headers=PROXIED)
    assert 'id="plain-http-warning"' not in secure.text
    assert "https://sms.example.org/api/mobile/v1" in secure.text
    local = web.http.get("/dashboard/phones")  # 127.0.0.1: the app allows it
    assert 'id="plain-http-warning"' not in local.text


def test_start_warns_when_phones_would_be_told_plain_http(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cases = [
        ({"host": "0.0.0.0"}, True),
        ({"host": "0.0.0.0", "public_url": "https://sms.example.org"}, False),
        ({"host": "127.0.0.1", "public_url": "http://sms.example.org"}, True),
        ({"host": "127.0.0.1", "public_url": "http://127.0.0.1:3000"}, False),
        ({"host": "127.0.0.1"}, False),
    ]
    for values, warned in cases:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="smsgw"):
            warn_of_plain_hooks(make_settings(tmp_path / "data", **values))
        assert any("refuse" in r.getMessage() for r in caplog.records) == warned, values


def test_the_trusted_proxies_setting_is_checked() -> None:
    ok = load_settings(bootstrap_account=False, forwarded_allow_ips="10.0.0.0/8, 192.0.2.1, *")
    assert ok.trusted_proxies == ["10.0.0.0/8", "192.0.2.1", "*"]
    with pytest.raises(SettingsError, match=r"SMSGW_FORWARDED_ALLOW_IPS.*'proxy\.local'"):
        load_settings(forwarded_allow_ips="127.0.0.1,proxy.local")
