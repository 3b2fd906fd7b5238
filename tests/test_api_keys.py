"""Named API keys: created once and shown once, used as `Authorization: Bearer` with exactly
a JWT's authorisation, last use recorded at most once a minute, revoked or expired keys
refused with a clear 401, scoped to their owner, stored hashed; Basic and JWT unchanged."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from smsgw.accounts import service as accounts
from smsgw.apikeys import repository
from smsgw.apikeys import service as keys
from smsgw.apikeys.service import KeyChecker
from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.engine import UnitConnection, database_for
from smsgw.domain.clock import format_timestamp
from smsgw.domain.errors import Unauthorized
from smsgw.tokens.service import TokenService
from smsgw.workers import retention
from tests.clients import TLS
from tests.conftest import CLOCK_START, Account, LiveServer, database_rows
from tests.test_tokens import bearer, issue, server_process
from tests.test_tokens_access import smsgw

SEND = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "Hi"}}
SEND_AND_LIST = ["messages:send", "messages:list"]


def create(client: httpx.Client, name: str, scopes: list[str], **extra: Any) -> dict[str, Any]:
    response = client.post("/auth/keys", json={"name": name, "scopes": scopes, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def listed(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/auth/keys")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def refusal(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["message"]


def test_a_key_is_shown_once_and_works_as_bearer_on_a_send_and_a_list(
    server: LiveServer, api: httpx.Client
) -> None:
    made = create(api, "billing", SEND_AND_LIST)
    key = made["key"]
    assert key.startswith(f"smsgw_{made['id']}_") and len(key) == 66
    assert (made["name"], made["scopes"], made["state"]) == ("billing", SEND_AND_LIST, "live")
    assert made["expiresAt"] is None and made["lastUsedAt"] is None
    with bearer(server, key) as client:
        sent = client.post("/messages", json=SEND)
        assert sent.status_code == 200, sent.text
        page = client.get("/messages")
        assert page.status_code == 200 and [m["id"] for m in page.json()] == [sent.json()["id"]]
    everything = api.get("/auth/keys").text
    assert key not in everything and key.split("_", 2)[2] not in everything
    [shown] = json.loads(everything)
    assert "key" not in shown and shown["id"] == made["id"]


def test_a_key_holds_only_its_scopes_as_a_jwt_does(server: LiveServer, api: httpx.Client) -> None:
    key = create(api, "reader", ["messages:list"])["key"]
    with bearer(server, key) as client:
        assert client.get("/messages").status_code == 200
        assert refusal(client.post("/messages", json=SEND)) == (
            403,
            "scope required: messages:send",
        )
        assert refusal(client.get("/settings")) == (403, "scope required: settings:read")
        # As an access token: the refresh route needs exactly a refresh token.
        assert refusal(client.post("/auth/token/refresh")) == (
            403,
            "scope required: tokens:refresh",
        )
        assert client.get("/auth/keys").status_code == 403  # tokens:manage
    everything = create(api, "everything", ["all:any"])["key"]
    with bearer(server, everything) as client:
        assert client.get("/settings").status_code == 200
        assert client.post("/auth/token/refresh").status_code == 403  # all:any is not refresh


def test_a_key_creates_keys_and_tokens_only_with_scopes_it_holds(
    server: LiveServer, alice: Account, api: httpx.Client
) -> None:
    manager = create(api, "manager", ["tokens:manage", "messages:list"])["key"]
    with bearer(server, manager) as client:
        assert refusal(client.post("/auth/keys", json={"name": "x", "scopes": ["all:any"]})) == (
            403,
            "scope required: all:any",
        )
        child = create(client, "child", ["messages:list"])
        assert client.post("/auth/token", json={"scopes": ["messages:list"]}).status_code == 201
        assert client.post("/auth/token", json={"scopes": ["messages:send"]}).status_code == 403
        assert client.delete(f"/auth/keys/{child['id']}").status_code == 204
    jwt = issue(server, alice, ["tokens:manage", "inbox:list"])
    with bearer(server, jwt["access_token"]) as client:
        assert create(client, "from a jwt", ["inbox:list"])["scopes"] == ["inbox:list"]
        refused = client.post("/auth/keys", json={"name": "y", "scopes": ["messages:send"]})
        assert refusal(refused) == (403, "scope required: messages:send")


def test_last_use_is_written_at_most_once_a_minute(
    at: list[datetime], server: LiveServer, api: httpx.Client
) -> None:
    # The clock first, then the server: its workers never see the real date (the retention
    # worker, reading that, would count a key expiring on CLOCK_START's day long ended).
    made = create(api, "poller", ["messages:list"])
    stored = "SELECT last_used_at FROM api_keys WHERE public_id = ?"
    with bearer(server, made["key"]) as client:
        assert client.get("/messages").status_code == 200
        assert listed(api)[0]["lastUsedAt"] == format_timestamp(CLOCK_START)
        at[0] = CLOCK_START + timedelta(seconds=59)
        assert client.get("/messages").status_code == 200
        assert listed(api)[0]["lastUsedAt"] == format_timestamp(CLOCK_START)  # no write
        first = database_rows(server.settings, stored, (made["id"],))
        at[0] = CLOCK_START + timedelta(seconds=60)
        assert client.get("/messages").status_code == 200
        assert listed(api)[0]["lastUsedAt"] == format_timestamp(at[0])
    assert database_rows(server.settings, stored, (made["id"],)) != first


def test_a_revoked_key_is_401_at_once_and_its_name_is_free_again(
    server: LiveServer, api: httpx.Client
) -> None:
    made = create(api, "old app", ["messages:list"])
    with bearer(server, made["key"]) as client:
        assert client.get("/messages").status_code == 200
        assert api.delete(f"/auth/keys/{made['id']}").status_code == 204
        refused = client.get("/messages")
        assert refusal(refused) == (401, "Unauthorized: API key revoked")
        assert refused.headers["WWW-Authenticate"].startswith("Basic")
    assert api.delete(f"/auth/keys/{made['id']}").status_code == 204  # revoked it stays
    [shown] = listed(api)
    assert shown["state"] == "revoked" and shown["revokedAt"] is not None
    again = create(api, "old app", ["messages:list"])
    assert again["id"] != made["id"]


def test_an_expired_key_is_401_once_the_clock_passes_its_expiry(
    at: list[datetime], server: LiveServer, api: httpx.Client
) -> None:
    # The clock first, as above: a retention pass begun on the real date, under load, once
    # deleted this key as long expired before it was first used (a 401 in CI).
    expiry = CLOCK_START + timedelta(hours=1)
    made = create(api, "short", ["messages:list"], expiresAt=format_timestamp(expiry))
    assert made["expiresAt"] == format_timestamp(expiry)
    with bearer(server, made["key"]) as client:
        assert client.get("/messages").status_code == 200
        at[0] = expiry - timedelta(milliseconds=1)
        assert client.get("/messages").status_code == 200
        at[0] = expiry
        assert refusal(client.get("/messages")) == (401, "Unauthorized: API key expired")
    assert listed(api)[0]["state"] == "expired"


@pytest.mark.parametrize(
    "token",
    [
        "smsgw_",
        "smsgw_0123456789abcdef_short",
        "smsgw_0123456789abcdef_" + "A" * 43,  # well-formed, but no such key
        "smsgw_0123456789ABCDEF_" + "A" * 43,
    ],
    ids=["prefix-only", "short-secret", "unknown", "upper-case-id"],
)
def test_a_malformed_or_unknown_key_is_401(shared_api: httpx.Client, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{shared_api.base_url}messages"  # without the client's Basic credentials
    assert refusal(httpx.get(url, headers=headers, verify=TLS)) == (
        401,
        "Unauthorized: invalid API key",
    )


def test_a_wrong_secret_is_401_and_says_nothing_of_the_key(
    server: LiveServer, api: httpx.Client
) -> None:
    made = create(api, "guessed", ["messages:list"])
    api.delete(f"/auth/keys/{made['id']}")
    key = made["key"]
    wrong = key[:-1] + ("B" if key[-1] != "B" else "C")
    with bearer(server, wrong) as client:  # revoked, but only the secret's holder learns that
        assert refusal(client.get("/messages")) == (401, "Unauthorized: invalid API key")


def test_bad_key_requests_are_400_or_409_naming_the_problem(
    shared_api: httpx.Client, at: list[datetime]
) -> None:
    def answer(**body: Any) -> tuple[int, str]:
        return refusal(shared_api.post("/auth/keys", json={"scopes": ["messages:list"], **body}))

    status, said = answer(name="x", scopes=["messages:sned"])
    assert status == 400 and said.startswith("scopes: unknown scope 'messages:sned'; known")
    assert answer(name="x", scopes=["tokens:refresh"])[0] == 400
    assert answer(name="")[0] == 400
    assert answer(name="x" * 101)[0] == 400
    assert answer(name="tab\there")[0] == 400
    assert answer(name="x", expiresAt=format_timestamp(CLOCK_START)) == (
        400,
        "expiresAt: must be in the future",
    )
    assert answer(name="x", expiresAt="tomorrow")[0] == 400
    assert shared_api.post("/auth/keys", json={"name": "twice", "scopes": ["inbox:list"]})
    assert answer(name="twice") == (
        409,
        "name: you already have an API key named 'twice'; choose another or revoke it",
    )


def test_nobody_lists_revokes_or_uses_another_accounts_key_as_theirs(
    server: LiveServer, api: httpx.Client
) -> None:
    made = create(api, "alice's", ["messages:list"])
    bob = server.create_user("bob")
    with server.client(bob) as client:
        assert listed(client) == []
        assert refusal(client.delete(f"/auth/keys/{made['id']}")) == (
            404,
            "no such API key of yours",
        )
        create(client, "alice's", ["messages:list"])  # names are per account
    with bearer(server, made["key"]) as client:
        assert client.get("/messages").status_code == 200
    assert [k["state"] for k in listed(api)] == ["live"]


def test_the_database_holds_the_secrets_hash_never_the_key(
    server: LiveServer, api: httpx.Client
) -> None:
    made = create(api, "stored", ["messages:list"])
    secret = made["key"].split("_", 2)[2]
    [row] = database_rows(server.settings, "SELECT * FROM api_keys")
    assert not [value for value in row if isinstance(value, str) and secret in value]
    [(stored,)] = database_rows(server.settings, "SELECT secret_hash FROM api_keys")
    assert stored == hashlib.sha256(secret.encode()).hexdigest() != secret


def test_basic_and_jwt_still_work_beside_keys(
    server: LiveServer, alice: Account, api: httpx.Client
) -> None:
    create(api, "beside", ["messages:list"])
    assert api.post("/messages", json=SEND).status_code == 200
    pair = issue(server, alice, ["messages:list"])
    with bearer(server, pair["access_token"]) as client:
        assert client.get("/messages").status_code == 200
    with server.client(alice, prefix="/3rdparty/v1") as hosted:  # the other prefix too
        assert [k["name"] for k in listed(hosted)] == ["beside"]


def test_a_revocation_is_refused_at_once_in_a_second_server_process(
    server: LiveServer, api: httpx.Client
) -> None:
    made = create(api, "shared", ["messages:list"])
    headers = {"Authorization": f"Bearer {made['key']}"}
    with server_process(server.settings) as url, httpx.Client(base_url=url, verify=TLS) as second:
        for _ in range(3):  # the second process has the key checked and kept
            assert second.get("/messages", headers=headers).status_code == 200
        assert api.delete(f"/auth/keys/{made['id']}").status_code == 204
        assert refusal(second.get("/messages", headers=headers))[0] == 401


def test_keys_survive_a_password_change_and_end_with_their_account(
    server: LiveServer, alice: Account, api: httpx.Client
) -> None:
    key = create(api, "lasting", ["messages:list"])["key"]

    async def change_password() -> None:
        db = database_for(server.settings)
        try:
            await accounts.change_password(db, alice.login, "another password, long")
        finally:
            await db.dispose()

    with bearer(server, key) as client:
        assert client.get("/messages").status_code == 200
        asyncio.run(change_password())
        assert client.get("/messages").status_code == 200
        smsgw(server.settings, "users", "delete", alice.login, "--yes")
        assert refusal(client.get("/messages")) == (401, "Unauthorized: invalid API key")


def test_key_events_are_in_the_owners_log_without_the_key(api: httpx.Client) -> None:
    made = create(api, "logged", ["messages:list"])
    api.delete(f"/auth/keys/{made['id']}")
    entries = [e for e in api.get("/logs").json() if e["module"] == "tokens"]
    assert [e["message"] for e in entries] == [
        f"API key {made['id']} created",
        f"API key {made['id']} revoked",
    ]
    assert entries[0]["context"] == {
        "key": made["id"],
        "name": "logged",
        "scopes": ["messages:list"],
    }
    assert made["key"] not in json.dumps(entries)


def test_the_operator_creates_lists_and_revokes_keys_from_the_command_line(
    server: LiveServer, alice: Account
) -> None:
    options = ["-u", "alice", "-n", "cli", "-s", "messages:list", "--expires-in-days", "30"]
    made = json.loads(smsgw(server.settings, "keys", "create", *options, "--json"))
    assert made["name"] == "cli" and made["expiresAt"] is not None
    with bearer(server, made["key"]) as client:
        assert client.get("/messages").status_code == 200
        [shown] = json.loads(smsgw(server.settings, "keys", "list", "-u", "alice", "--json"))
        assert shown["id"] == made["id"] and "key" not in shown and shown["lastUsedAt"]
        assert made["id"] in smsgw(server.settings, "keys", "list", "-u", "alice")
        assert f"revoked API key {made['id']}" in smsgw(
            server.settings, "keys", "revoke", made["id"]
        )
        assert client.get("/messages").status_code == 401
    assert "no live API key" in smsgw(server.settings, "keys", "revoke", made["id"], code=1)
    refused = smsgw(
        server.settings, "keys", "create", "-u", "alice", "-n", "x", "-s", "nope", code=1
    )
    assert "unknown scope 'nope'" in refused


def test_checks_within_a_minute_cost_one_write_and_one_lookup_until_a_revocation(
    settings: Settings, at: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process keeps the key's row (no lookup per request) and writes its last use once
    a minute at most (no write per request)."""
    migrate.upgrade(settings)
    lookups: list[str] = []
    look_up = repository.credential

    async def counted(conn: UnitConnection, public_id: str) -> repository.Credential | None:
        lookups.append(public_id)
        return await look_up(conn, public_id)

    monkeypatch.setattr(repository, "credential", counted)

    async def scenario() -> None:
        db = database_for(settings)
        try:
            user = await accounts.create_user(db, "alice", "correct horse battery")
            user_id = await accounts.user_id_of(db, user.login)
            made = await keys.create(db, user_id, "busy", ["messages:list"], None)
            checker = KeyChecker(db, TokenService(settings, db).revocations)
            writes: list[object] = []
            write_unit = db.write_unit

            def counted_write(work: Any, **options: Any) -> Any:
                writes.append(work)
                return write_unit(work, **options)

            monkeypatch.setattr(db, "write_unit", counted_write)
            for second in range(60):
                at[0] = CLOCK_START + timedelta(seconds=second)
                assert (await checker.verify(made.key)).user_id == user_id
            assert (len(writes), len(lookups)) == (1, 1)
            at[0] = CLOCK_START + timedelta(seconds=60)
            await checker.verify(made.key)
            assert (len(writes), len(lookups)) == (2, 1)
            await keys.revoke(db, user_id, made.row.public_id)
            with pytest.raises(Unauthorized, match="revoked"):
                await checker.verify(made.key)
            assert len(lookups) == 2
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_keys_ended_90_days_ago_are_deleted_by_the_retention_round(
    settings: Settings, at: list[datetime]
) -> None:
    migrate.upgrade(settings)

    async def scenario() -> None:
        db = database_for(settings)
        try:
            user = await accounts.create_user(db, "alice", "correct horse battery")
            user_id = await accounts.user_id_of(db, user.login)
            live = await keys.create(db, user_id, "live", ["messages:list"], None)
            revoked = await keys.create(db, user_id, "revoked", ["messages:list"], None)
            await keys.revoke(db, user_id, revoked.row.public_id)
            expiring = CLOCK_START + timedelta(days=1)
            expired = await keys.create(db, user_id, "expired", ["messages:list"], expiring)
            names = lambda rows: sorted(row.name for row in rows)  # noqa: E731
            at[0] = CLOCK_START + timedelta(days=90)  # revoked 90 days ago: still listed
            assert (await retention.sweep(db, settings))["api_keys"] == 0
            assert names(await keys.list_for_user(db, user_id)) == ["expired", "live", "revoked"]
            at[0] = CLOCK_START + timedelta(days=90, seconds=1)
            assert (await retention.sweep(db, settings))["api_keys"] == 1
            assert names(await keys.list_for_user(db, user_id)) == ["expired", "live"]
            at[0] = expiring + timedelta(days=90, seconds=1)
            assert (await retention.sweep(db, settings))["api_keys"] == 1
            assert names(await keys.list_for_user(db, user_id)) == ["live"]
            checker = KeyChecker(db, TokenService(settings, db).revocations)
            assert (await checker.verify(live.key)).user_id == user_id
            for gone in (revoked, expired):
                with pytest.raises(Unauthorized):
                    await checker.verify(gone.key)
        finally:
            await db.dispose()

    asyncio.run(scenario())
