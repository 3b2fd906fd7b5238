"""A password change or an account deletion ends the account's JWTs at once, everywhere;
token events are in the owner's event log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from smsgw.config import Settings
from tests.clients import TLS
from tests.conftest import Account, LiveServer, database_environment
from tests.test_tokens import bearer, issue, server_process
from tests.web_support import Dashboard

MOBILE_APP = {"User-Agent": "me.capcom.smsgateway/1.68.0"}
NEW_PASSWORD = "a new password, long"
SEND = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "Hi"}}


def smsgw(settings: Settings, *args: str, code: int = 0) -> str:
    """The `smsgw` command in a process of its own on the server's data directory."""
    env = os.environ | {
        **database_environment(settings),
        "SMSGW_DATA_DIR": str(settings.data_dir),
        "SMSGW_BOOTSTRAP_ACCOUNT": "false",
        "COLUMNS": "200",  # an operator's terminal: Rich cuts columns to fit 80
    }
    done = subprocess.run(
        [sys.executable, "-m", "smsgw", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout + done.stderr


def change_password_from_a_phone(server: LiveServer, account: Account) -> None:
    with httpx.Client(
        base_url=server.url + "/api/mobile/v1", headers=MOBILE_APP, verify=TLS
    ) as mobile:
        device = mobile.post(
            "/device",
            json={"name": "Google/oriole"},
            auth=(account.login, account.password),
        )
        assert device.status_code == 201, device.text
        body = {"currentPassword": account.password, "newPassword": NEW_PASSWORD}
        headers = {"Authorization": f"Bearer {device.json()['token']}"}
        assert mobile.patch("/user/password", json=body, headers=headers).status_code == 204


def refresh(server: LiveServer, refresh_token: str) -> int:
    with bearer(server, refresh_token) as client:
        return client.post("/auth/token/refresh").status_code


def test_a_password_change_from_the_api_ends_tokens_at_once_also_in_a_second_process(
    server: LiveServer, alice: Account
) -> None:
    pair = issue(server, alice, ["messages:list"])
    dashboard = Dashboard(server)
    assert dashboard.sign_in(alice).status_code == 303
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    with server_process(server.settings) as url, httpx.Client(base_url=url, verify=TLS) as second:
        for _ in range(3):  # the second process has the token checked and its stamp cached
            assert second.get("/messages", headers=headers).status_code == 200
        with bearer(server, pair["access_token"]) as here:
            assert here.get("/messages").status_code == 200
            change_password_from_a_phone(server, alice)
            assert here.get("/messages").status_code == 401
        assert second.get("/messages", headers=headers).status_code == 401
    assert dashboard.http.get("/dashboard/messages").status_code == 303  # signed out too
    dashboard.close()
    assert refresh(server, pair["refresh_token"]) == 401
    fresh = issue(server, Account(alice.login, NEW_PASSWORD), ["messages:list"])
    with bearer(server, fresh["access_token"]) as client:
        assert client.get("/messages").status_code == 200


def test_cli_passwd_ends_tokens_and_dashboard_sessions_at_once(
    server: LiveServer, alice: Account
) -> None:
    pair = issue(server, alice, ["messages:list"])
    dashboard = Dashboard(server)
    assert dashboard.sign_in(alice).status_code == 303
    assert dashboard.http.get("/dashboard/messages").status_code == 200
    with server_process(server.settings) as url, httpx.Client(base_url=url, verify=TLS) as second:
        headers = {"Authorization": f"Bearer {pair['access_token']}"}
        assert second.get("/messages", headers=headers).status_code == 200
        smsgw(server.settings, "users", "passwd", alice.login, "--password", NEW_PASSWORD)
        assert second.get("/messages", headers=headers).status_code == 401
    with bearer(server, pair["access_token"]) as client:
        assert client.get("/messages").status_code == 401
    assert refresh(server, pair["refresh_token"]) == 401
    assert dashboard.http.get("/dashboard/messages").status_code == 303
    dashboard.close()


def test_a_deleted_accounts_token_is_401_not_500_even_when_its_id_is_reused(
    server: LiveServer, alice: Account
) -> None:
    pair = issue(server, alice, ["messages:send", "messages:list"])
    dashboard = Dashboard(server)
    assert dashboard.sign_in(alice).status_code == 303
    with bearer(server, pair["access_token"]) as client:
        assert client.post("/messages", json=SEND).status_code == 200
        smsgw(server.settings, "users", "delete", alice.login, "--yes")
        assert client.post("/messages", json=SEND).status_code == 401
        assert dashboard.http.get("/dashboard/messages").status_code == 303
        again = server.create_user(alice.login)  # SQLite hands the new account the same id
        assert client.get("/messages").status_code == 401
    assert refresh(server, pair["refresh_token"]) == 401
    # The new account's own tokens work, though this process saw the old one refused.
    with bearer(server, issue(server, again, ["messages:list"])["access_token"]) as client:
        assert client.get("/messages").status_code == 200
    dashboard.close()


def token_entries(api: httpx.Client) -> list[dict[str, Any]]:
    response = api.get("/logs")
    assert response.status_code == 200, response.text
    return [entry for entry in response.json() if entry["module"] == "tokens"]


def test_issuing_refreshing_and_revoking_are_in_the_owners_log_without_the_tokens(
    server: LiveServer, alice: Account, api: httpx.Client
) -> None:
    bob = server.create_user("bob")
    pair = issue(server, alice, ["messages:list"])
    with bearer(server, pair["refresh_token"]) as client:
        renewed = client.post("/auth/token/refresh").json()
    assert api.delete(f"/auth/token/{renewed['id']}").status_code == 204
    found = token_entries(api)
    assert [e["message"] for e in found] == [
        f"token {pair['id']} issued",
        f"token {renewed['id']} refreshed",
        f"token {renewed['id']} revoked",
    ]
    assert all(e["priority"] == "INFO" for e in found)
    assert [(e["context"]["jti"], e["context"]["scopes"]) for e in found] == [
        (pair["id"], ["messages:list"]),
        (renewed["id"], ["messages:list"]),
        (renewed["id"], ["messages:list"]),
    ]
    text = api.get("/logs").text
    for token in (pair["access_token"], pair["refresh_token"], renewed["access_token"]):
        assert token not in text and token.split(".")[2] not in text
    with server.client(bob) as other:
        assert token_entries(other) == []


def test_a_password_change_logs_each_live_token_as_revoked(
    server: LiveServer, alice: Account
) -> None:
    pair = issue(server, alice, ["messages:list"])
    smsgw(server.settings, "users", "passwd", alice.login, "--password", NEW_PASSWORD)
    with server.client(Account(alice.login, NEW_PASSWORD)) as api:
        revoked = [e for e in token_entries(api) if e["message"].endswith("revoked")]
    assert [(e["context"]["jti"], e["context"]["reason"]) for e in revoked] == [
        (pair["id"], "password changed")
    ]


def test_tokens_cli_lists_a_users_tokens_and_revokes_one_at_once(
    server: LiveServer, alice: Account, tmp_path: Path
) -> None:
    bob = server.create_user("bob")
    pair = issue(server, alice, ["messages:list"])
    bobs = issue(server, bob, ["messages:list"])
    listed = smsgw(server.settings, "tokens", "list", "--user", alice.login)
    assert pair["id"] in listed and "messages:list" in listed and "live" in listed
    assert bobs["id"] not in listed
    assert pair["access_token"] not in listed and pair["refresh_token"] not in listed
    with bearer(server, pair["access_token"]) as client:
        assert client.get("/messages").status_code == 200
        assert f"revoked {pair['id']}" in smsgw(server.settings, "tokens", "revoke", pair["id"])
        assert client.get("/messages").status_code == 401
    assert refresh(server, pair["refresh_token"]) == 401
    assert "revoked" in smsgw(server.settings, "tokens", "list", "--user", alice.login)
    with bearer(server, bobs["access_token"]) as client:
        assert client.get("/messages").status_code == 200
    assert "no live token" in smsgw(server.settings, "tokens", "revoke", "nope", code=1)
    assert "nobody" in smsgw(server.settings, "tokens", "list", "--user", "nobody", code=1)
