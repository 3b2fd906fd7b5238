"""JWT tokens: issue, refresh once, revoke at once (also in a second server process)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
import jwt
import pytest
from android_sms_gateway import APIClient, AsyncAPIClient, Message, TextMessage, TokenRequest
from android_sms_gateway.errors import UnauthorizedError

from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.domain.clock import parse_timestamp
from smsgw.tokens.secret import FILE_NAME
from tests.clients import TLS
from tests.conftest import (
    API,
    Account,
    LiveServer,
    create_account,
    database_environment,
    free_port,
    make_settings,
    running,
)

NUMBER = "+12025550100"
SEND_AND_READ = ["messages:send", "messages:read", "messages:list", "tokens:manage"]


def bearer(server: LiveServer, token: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=server.api, headers=headers, timeout=30, verify=TLS)


def issue(
    server: LiveServer, account: Account, scopes: list[str], **extra: object
) -> dict[str, str]:
    with server.client(account) as api:
        response = api.post("/auth/token", json={"scopes": scopes, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


def text(body: str) -> Message:
    return Message(phone_numbers=[NUMBER], text_message=TextMessage(text=body))


def test_the_official_client_gets_uses_refreshes_and_revokes_a_token(
    server: LiveServer, alice: Account
) -> None:
    base_url = server.url + "/3rdparty/v1"
    with APIClient(alice.login, alice.password, base_url=base_url) as basic:
        token = basic.generate_token(TokenRequest(scopes=SEND_AND_READ, ttl=600))
    assert token.token_type == "Bearer"
    assert token.refresh_token
    with APIClient(None, token.access_token, base_url=base_url) as client:
        sent = client.send(text("Sent with a token"))
        assert client.get_state(sent.id).id == sent.id
        renewed = client.refresh_token(token.refresh_token)
        assert renewed.id != token.id
        client.revoke_token(token.id)
        with pytest.raises(UnauthorizedError):
            client.get_state(sent.id)
    with APIClient(None, renewed.access_token, base_url=base_url) as client:
        assert client.get_state(sent.id).id == sent.id


def test_the_async_official_client_gets_uses_and_revokes_a_token(
    server: LiveServer, alice: Account
) -> None:
    """AsyncAPIClient.refresh_token cannot be used: 4.3.3 calls its HTTP client's post()
    without the payload it requires (TypeError before any request), so refreshing is
    exercised with the sync client and over plain HTTP instead."""
    base_url = server.url + "/3rdparty/v1"

    async def scenario() -> None:
        async with AsyncAPIClient(alice.login, alice.password, base_url=base_url) as basic:
            token = await basic.generate_token(TokenRequest(scopes=SEND_AND_READ))
            other = await basic.generate_token(TokenRequest(scopes=SEND_AND_READ, ttl=120))
        async with AsyncAPIClient(None, token.access_token, base_url=base_url) as client:
            sent = await client.send(text("Sent async with a token"))
            await client.revoke_token(token.id)
            with pytest.raises(UnauthorizedError):
                await client.get_state(sent.id)
        async with AsyncAPIClient(None, other.access_token, base_url=base_url) as client:
            assert (await client.get_state(sent.id)).id == sent.id

    asyncio.run(scenario())


def test_a_token_answer_is_201_in_both_spellings_with_upstream_claims(
    server: LiveServer, alice: Account
) -> None:
    body = issue(server, alice, ["messages:send"])
    assert body["token_type"] == body["tokenType"] == "Bearer"
    assert body["access_token"] == body["accessToken"]
    assert body["refresh_token"] == body["refreshToken"]
    assert body["expires_at"] == body["expiresAt"]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert parse_timestamp(body["expires_at"]) == datetime.fromtimestamp(claims["exp"], UTC)
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"
    assert claims["jti"] == body["id"]
    assert claims["scopes"] == ["messages:send"]
    assert claims["sub"] == str(claims["user_id"])
    refresh = jwt.decode(body["refresh_token"], options={"verify_signature": False})
    assert refresh["scopes"] == ["tokens:refresh"]
    assert refresh["original_scopes"] == ["messages:send"]


def test_ttl_can_only_shorten_the_configured_lifetime(server: LiveServer, alice: Account) -> None:
    configured = server.settings.jwt_access_ttl_seconds
    for asked, expected in ((60, 60), (configured * 10, configured), (0, configured)):
        before = datetime.now(UTC)
        expires_at = parse_timestamp(
            issue(server, alice, ["messages:send"], ttl=asked)["expiresAt"]
        )
        assert before + timedelta(seconds=expected - 2) <= expires_at
        assert expires_at <= datetime.now(UTC) + timedelta(seconds=expected)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"scopes": ["messages:sned"]}, "unknown scope 'messages:sned'"),
        ({"scopes": ["tokens:refresh"]}, "unknown scope 'tokens:refresh'"),
        ({"scopes": []}, "scopes"),
        ({}, "scopes"),
        ({"scopes": ["messages:send"], "ttl": -1}, "ttl"),
        ({"scopes": ["messages:send"], "ttl": "long"}, "ttl"),
        ({"scopes": ["messages:send"], "ttl": "60"}, "ttl"),
        ({"scopes": [7]}, "scopes"),
    ],
)
def test_bad_token_requests_are_400_naming_the_problem(
    api: httpx.Client, body: dict[str, object], message: str
) -> None:
    response = api.post("/auth/token", json=body)
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_a_refresh_token_works_once_and_a_replay_is_401(server: LiveServer, alice: Account) -> None:
    first = issue(server, alice, ["messages:list"])
    with bearer(server, first["refresh_token"]) as client:
        renewed = client.post("/auth/token/refresh", json={})
        replayed = client.post("/auth/token/refresh", json={})
    assert renewed.status_code == 201
    assert replayed.status_code == 401
    assert replayed.json() == {"message": "Unauthorized: invalid, expired or revoked token"}
    new_claims = jwt.decode(renewed.json()["access_token"], options={"verify_signature": False})
    assert new_claims["scopes"] == ["messages:list"]
    with bearer(server, renewed.json()["refreshToken"]) as client:
        assert client.post("/auth/token/refresh").status_code == 201


def test_only_a_refresh_token_refreshes_and_it_opens_nothing_else(
    server: LiveServer, alice: Account, api: httpx.Client
) -> None:
    pair = issue(server, alice, ["messages:list", "tokens:manage"])
    assert api.post("/auth/token/refresh").json() == {"message": "scope required: tokens:refresh"}
    with bearer(server, pair["access_token"]) as client:
        assert client.post("/auth/token/refresh").status_code == 403
    with bearer(server, pair["refresh_token"]) as client:
        listed = client.get("/messages")
    assert listed.status_code == 403
    assert listed.json() == {"message": "scope required: messages:list"}


def test_a_token_grants_only_scopes_it_holds(server: LiveServer, alice: Account) -> None:
    manager = issue(server, alice, ["tokens:manage", "messages:list"])
    with bearer(server, manager["access_token"]) as client:
        narrower = client.post("/auth/token", json={"scopes": ["messages:list"]})
        wider = client.post("/auth/token", json={"scopes": ["messages:send"]})
        wildcard = client.post("/auth/token", json={"scopes": ["all:any"]})
    assert narrower.status_code == 201
    assert wider.status_code == 403
    assert wider.json() == {"message": "scope required: messages:send"}
    assert wildcard.status_code == 403


def test_revoking_an_access_token_revokes_its_refresh_token_at_once(
    server: LiveServer, alice: Account, api: httpx.Client
) -> None:
    pair = issue(server, alice, ["messages:list"])
    with bearer(server, pair["access_token"]) as client:
        assert client.get("/messages").status_code == 200
        assert api.delete(f"/auth/token/{pair['id']}").status_code == 204
        refused = client.get("/messages")
    assert refused.status_code == 401
    with bearer(server, pair["refresh_token"]) as client:
        assert client.post("/auth/token/refresh").status_code == 401
    assert api.delete(f"/auth/token/{pair['id']}").status_code == 204  # again: still 204


def test_nobody_revokes_another_users_token(server: LiveServer, alice: Account) -> None:
    bob = server.create_user("bob")
    pair = issue(server, alice, ["messages:list"])
    with server.client(bob) as client:
        assert client.delete(f"/auth/token/{pair['id']}").status_code == 204
    with bearer(server, pair["access_token"]) as client:
        assert client.get("/messages").status_code == 200


def test_an_expired_token_is_401(server: LiveServer, alice: Account) -> None:
    pair = issue(server, alice, ["messages:list"], ttl=1)
    time.sleep(2.1)
    with bearer(server, pair["access_token"]) as client:
        assert client.get("/messages").status_code == 401


@pytest.mark.parametrize(
    "forge",
    [
        lambda claims: jwt.encode(claims, "another secret of thirty-two chars!", algorithm="HS256"),
        lambda claims: jwt.encode(claims, None, algorithm="none"),
        lambda claims: "not.a.jwt",
    ],
    ids=["other-key", "alg-none", "garbage"],
)
def test_a_forged_token_is_401(server: LiveServer, alice: Account, forge: object) -> None:
    pair = issue(server, alice, ["messages:list"])
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    claims["scopes"] = ["all:any"]
    assert callable(forge)
    with bearer(server, forge(claims)) as client:
        assert client.get("/messages").status_code == 401


def test_tokens_survive_a_restart_and_the_generated_secret_is_private(
    settings: Settings, tmp_path: Path
) -> None:
    with running(settings) as first:
        alice = first.create_user("alice")
        pair = issue(first, alice, ["messages:list"])
    secret = settings.data_dir / FILE_NAME
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    with running(settings) as second, bearer(second, pair["access_token"]) as client:
        assert client.get("/messages").status_code == 200
    other = make_settings(tmp_path / "other", jwt_secret="x" * 40)
    other_secret = (other.data_dir / FILE_NAME).exists()
    with running(other) as third, bearer(third, pair["access_token"]) as client:
        assert client.get("/messages").status_code == 401
    assert not other_secret and not (other.data_dir / FILE_NAME).exists()


@contextmanager
def server_process(
    settings: Settings, log_level: str = "warning", output: IO[bytes] | None = None
) -> Iterator[str]:
    """`smsgw serve` in a process of its own on the same data directory; its API URL.
    `output` takes what it prints (its access log at `log_level="info"`)."""
    port = free_port()
    env = os.environ | {
        **database_environment(settings),
        "SMSGW_DATA_DIR": str(settings.data_dir),
        "SMSGW_PORT": str(port),
        "SMSGW_BOOTSTRAP_ACCOUNT": "false",
        "SMSGW_LOG_LEVEL": log_level,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "smsgw", "serve"], env=env, stdout=output, stderr=output
    )
    url = f"http://127.0.0.1:{port}{API}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(url + "/messages", timeout=5, verify=TLS)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)


def test_serve_writes_smsgw_own_log_lines_with_time_level_and_source(tmp_path: Path) -> None:
    """`smsgw serve` at SMSGW_LOG_LEVEL=info writes smsgw's own info lines (here: a token
    issued, from `smsgw.tokens`) with their time, level and logger; the token never. Before,
    only uvicorn's lines came out: smsgw's info lines were lost."""
    settings = make_settings(tmp_path / "data")
    migrate.upgrade(settings)
    create_account(settings, "alice", "correct horse battery")
    output = tmp_path / "serve.log"
    with output.open("wb") as sink, server_process(settings, "info", sink) as url:
        response = httpx.post(
            url + "/auth/token", json={"scopes": ["messages:list"]},
            auth=("alice", "correct horse battery"), verify=TLS,
        )  # fmt: skip
        assert response.status_code == 201, response.text
        body = response.json()
    logged = output.read_text()
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    line = rf"^{when} INFO smsgw\.tokens: token issued: user \d+, jti {body['id']}"
    assert re.search(line, logged, re.MULTILINE), logged
    assert body["access_token"] not in logged and body["refresh_token"] not in logged


def test_revocation_takes_effect_at_once_in_a_second_server_process(
    server: LiveServer, alice: Account, api: httpx.Client
) -> None:
    pair = issue(server, alice, ["messages:list"])
    other = issue(server, alice, ["messages:list"])
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    other_headers = {"Authorization": f"Bearer {other['access_token']}"}
    with server_process(server.settings) as url, httpx.Client(base_url=url, verify=TLS) as second:
        for _ in range(3):  # the second process has the token checked and cached
            assert second.get("/messages", headers=headers).status_code == 200
        assert api.delete(f"/auth/token/{pair['id']}").status_code == 204
        assert second.get("/messages", headers=headers).status_code == 401
        assert second.get("/messages", headers=other_headers).status_code == 200
        # ...and the other way round: revoked there, refused here at once.
        assert second.delete(f"/auth/token/{other['id']}", headers=other_headers).status_code == 403
        basic = (alice.login, alice.password)
        assert second.delete(f"/auth/token/{other['id']}", auth=basic).status_code == 204
    with bearer(server, other["access_token"]) as client:
        assert client.get("/messages").status_code == 401
