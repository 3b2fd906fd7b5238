"""Sending with Basic credentials that verified before (api/apps/messages.fast_send): no read
of the login, the send's own transaction confirms them, and whatever does not hold is
answered as the usual path answers it, with nothing stored."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsgw.accounts import service as accounts
from smsgw.config import Settings
from smsgw.db.engine import database_for
from smsgw.messages import repository as message_rows
from tests.conftest import Account, LiveServer, make_settings

SENT = 200  # the seed API's answer to a queued message
BODY = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "hi"}}


class Counted:
    """Calls of a module's function, counted (the server runs in this process)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
        self.calls = 0
        original = getattr(module, name)

        async def counted_async(*args: Any) -> Any:
            self.calls += 1
            return await original(*args)

        def counted(*args: Any) -> Any:
            self.calls += 1
            return original(*args)

        wrapper = counted_async if inspect.iscoroutinefunction(original) else counted
        monkeypatch.setattr(module, name, wrapper)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """conftest's `server` serves these: a login is blocked after three failures."""
    return make_settings(tmp_path / "data", auth_failures_per_login=3)


@pytest.fixture
def owner(server: LiveServer) -> Account:
    return server.create_user("owner")


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> Counted:
    """Reads of a login's stored credentials outside a send (the usual path)."""
    return Counted(monkeypatch, accounts, "stored_credentials")


@pytest.fixture
def recalls(monkeypatch: pytest.MonkeyPatch) -> Counted:
    """Sends that took credentials from the cache, to confirm them in their transaction."""
    return Counted(monkeypatch, accounts, "confirming")


def post(server: LiveServer, login: str, password: str, body: Any = BODY) -> httpx.Response:
    with server.client() as client:
        return client.post("/messages", json=body, auth=(login, password))


def stored(server: LiveServer, account: Account) -> list[str]:
    with server.client(account) as client:
        answer = client.get("/messages")
        assert answer.status_code == 200, answer.text
        return [m["id"] for m in answer.json()]


def elsewhere(settings: Settings, change: Any) -> None:
    """A change made by another process or node: this server's caches hear nothing of it."""

    async def run() -> None:
        db = database_for(settings)
        try:
            await change(db)
        finally:
            await db.dispose()

    asyncio.run(run())


def test_a_pair_verified_before_sends_without_a_read(
    server: LiveServer, owner: Account, lookups: Counted, recalls: Counted
) -> None:
    assert post(server, owner.login, owner.password).status_code == SENT
    assert (lookups.calls, recalls.calls) == (1, 0)  # verified: now in the cache
    for _ in range(3):
        assert post(server, owner.login, owner.password).status_code == SENT
    assert (lookups.calls, recalls.calls) == (1, 3)
    assert len(stored(server, owner)) == 4


def test_a_password_changed_elsewhere_is_refused_and_forgotten(
    server: LiveServer, settings: Settings, owner: Account, recalls: Counted
) -> None:
    assert post(server, owner.login, owner.password).status_code == SENT
    elsewhere(settings, lambda db: accounts.change_password(db, owner.login, "a new password"))
    answer = post(server, owner.login, owner.password)
    assert answer.status_code == 401, answer.text
    assert recalls.calls == 1  # recalled, and not confirmed
    assert post(server, owner.login, owner.password).status_code == 401
    assert recalls.calls == 1  # forgotten: not recalled again
    assert post(server, owner.login, "a new password").status_code == SENT
    assert len(stored(server, Account(owner.login, "a new password"))) == 2


def test_an_account_deleted_elsewhere_is_refused(
    server: LiveServer, settings: Settings, owner: Account, recalls: Counted
) -> None:
    assert post(server, owner.login, owner.password).status_code == SENT
    elsewhere(settings, lambda db: accounts.delete_user(db, owner.login))
    assert post(server, owner.login, owner.password).status_code == 401
    assert recalls.calls == 1
    assert post(server, owner.login, owner.password).status_code == 401
    assert recalls.calls == 1  # forgotten: the usual path found the login gone


def test_an_account_made_again_with_the_login_refuses_the_old_password(
    server: LiveServer, settings: Settings, owner: Account, recalls: Counted
) -> None:
    """SQLite may give the new account the old one's id: the stored hash tells them apart."""
    assert post(server, owner.login, owner.password).status_code == SENT

    async def again(db: Any) -> None:
        await accounts.delete_user(db, owner.login)
        await accounts.create_user(db, owner.login, "another password")

    elsewhere(settings, again)
    assert post(server, owner.login, owner.password).status_code == 401
    assert recalls.calls == 1
    assert stored(server, Account(owner.login, "another password")) == []


def test_a_stale_pair_is_forgotten_whatever_failed_first(
    server: LiveServer, settings: Settings, owner: Account, recalls: Counted
) -> None:
    """A phone of no one's fails the send before the credentials are confirmed: the usual
    path still finds them stale (401) and drops them from the cache."""
    body = BODY | {"deviceId": "no-such-phone"}
    assert post(server, owner.login, owner.password).status_code == SENT
    elsewhere(settings, lambda db: accounts.change_password(db, owner.login, "a new password"))
    for _ in range(2):
        assert post(server, owner.login, owner.password, body).status_code == 401
    assert recalls.calls == 1


def test_a_failure_of_another_kind_answers_stale_credentials_first(
    server: LiveServer,
    settings: Settings,
    owner: Account,
    recalls: Counted,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A send that fails unexpectedly is not sent again (its outcome could be unknown); the
    caller whose credentials no longer hold gets 401, one whose credentials hold the 500."""
    assert post(server, owner.login, owner.password).status_code == SENT
    stores: list[object] = []

    async def broken(*_: Any) -> Any:
        stores.append(None)
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(message_rows, "store_checked", broken)
    assert post(server, owner.login, owner.password).status_code == 500
    assert (recalls.calls, len(stores)) == (1, 1)  # recalled, failed, not sent again
    elsewhere(settings, lambda db: accounts.change_password(db, owner.login, "a new password"))
    assert post(server, owner.login, owner.password).status_code == 401
    assert (recalls.calls, len(stores)) == (2, 2)


def test_credentials_that_no_longer_hold_are_answered_before_the_body(
    server: LiveServer, settings: Settings, owner: Account
) -> None:
    """A number that is not one is a 400, but only for a caller whose credentials hold."""
    bad = {"phoneNumbers": ["not a number"], "textMessage": {"text": "hi"}}
    assert post(server, owner.login, owner.password).status_code == SENT
    assert post(server, owner.login, owner.password, bad).status_code == 400
    elsewhere(settings, lambda db: accounts.change_password(db, owner.login, "a new password"))
    assert post(server, owner.login, owner.password, bad).status_code == 401


def test_a_duplicate_id_with_recalled_credentials_is_refused_as_ever(
    server: LiveServer, owner: Account, recalls: Counted
) -> None:
    body = BODY | {"id": "once"}
    assert post(server, owner.login, owner.password).status_code == SENT
    assert post(server, owner.login, owner.password, body).status_code == SENT
    answer = post(server, owner.login, owner.password, body)
    assert answer.status_code == 409, answer.text
    assert recalls.calls == 2  # both recalled; the second then went the usual way
    assert stored(server, owner).count("once") == 1


def test_a_blocked_login_is_refused_even_with_a_pair_in_the_cache(
    server: LiveServer, owner: Account, recalls: Counted
) -> None:
    assert post(server, owner.login, owner.password).status_code == SENT
    for _ in range(3):  # the settings' auth_failures_per_login
        assert post(server, owner.login, "a wrong password").status_code == 401
    answer = post(server, owner.login, owner.password)
    assert answer.status_code == 429, answer.text
    assert recalls.calls == 0
