"""Accounts: Basic auth, the verified-credential cache, password changes and deletion."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import pytest

from smsgw.accounts import service as accounts
from smsgw.accounts.errors import BadLogin, LoginTaken, UnknownLogin, WeakPassword
from smsgw.accounts.passwords import CredentialCache, hash_password, verify_password
from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.engine import Database, database_for
from tests.conftest import Account, LiveServer

T = TypeVar("T")


def in_db(settings: Settings, action: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = database_for(settings)
        try:
            return await action(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    migrate.upgrade(settings)
    return settings


def test_passwords_are_stored_as_argon2_hashes(migrated: Settings) -> None:
    in_db(migrated, lambda db: accounts.create_user(db, "dora", "a secret password"))
    [user] = in_db(migrated, accounts.list_users)
    assert user.password_hash.startswith("$argon2id$")
    assert "a secret password" not in user.password_hash
    assert verify_password(user.password_hash, "a secret password")
    assert not verify_password(user.password_hash, "another password")
    assert not verify_password(None, "anything")


def test_a_generated_password_is_returned_once_and_works(migrated: Settings) -> None:
    account = in_db(migrated, lambda db: accounts.create_user(db, "erin"))
    assert len(account.password) == 20
    [user] = in_db(migrated, accounts.list_users)
    assert verify_password(user.password_hash, account.password)


@pytest.mark.parametrize(
    ("login", "password", "error"),
    [
        ("", "long enough pw", BadLogin),
        ("has space", "long enough pw", BadLogin),
        ("colon:login", "long enough pw", BadLogin),
        ("x" * 65, "long enough pw", BadLogin),
        ("fine", "short", WeakPassword),
    ],
)
def test_bad_logins_and_short_passwords_are_refused(
    migrated: Settings, login: str, password: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        in_db(migrated, lambda db: accounts.create_user(db, login, password))


def test_logins_are_unique(migrated: Settings) -> None:
    in_db(migrated, lambda db: accounts.create_user(db, "frank", "long enough pw"))
    with pytest.raises(LoginTaken):
        in_db(migrated, lambda db: accounts.create_user(db, "frank", "other password"))


def test_unknown_logins_cannot_be_changed_or_deleted(migrated: Settings) -> None:
    with pytest.raises(UnknownLogin):
        in_db(migrated, lambda db: accounts.change_password(db, "ghost", "long enough pw"))
    with pytest.raises(UnknownLogin):
        in_db(migrated, lambda db: accounts.delete_user(db, "ghost"))


def test_cache_hit_needs_the_same_pair_and_the_same_stored_hash() -> None:
    cache = CredentialCache(max_size=10)
    stored = hash_password("pw-one-long")
    cache.remember("ann", "pw-one-long", stored, 1)
    assert cache.is_verified("ann", "pw-one-long", stored)
    assert not cache.is_verified("ann", "pw-two-long", stored)
    assert not cache.is_verified("bob", "pw-one-long", stored)
    assert not cache.is_verified("ann", "pw-one-long", hash_password("pw-one-long"))


def test_cache_evicts_the_least_recently_remembered() -> None:
    cache = CredentialCache(max_size=2)
    for login in ("a", "b", "c"):
        cache.remember(login, "pw", "hash", 1)
    assert not cache.is_verified("a", "pw", "hash")
    assert cache.is_verified("c", "pw", "hash")


def test_a_cached_request_does_not_hash(
    migrated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_db(migrated, lambda db: accounts.create_user(db, "hank", "long enough pw"))
    cache = CredentialCache(max_size=10)
    in_db(migrated, lambda db: accounts.authenticate(db, cache, "hank", "long enough pw"))

    def no_hashing(*_args: object) -> bool:
        raise AssertionError("a cached credential was hashed again")

    monkeypatch.setattr(accounts, "verify_password", no_hashing)
    user_id = in_db(migrated, lambda db: accounts.authenticate(db, cache, "hank", "long enough pw"))
    assert user_id > 0


def test_password_change_stops_the_old_password_at_once(
    server: LiveServer, alice: Account, api: httpx.Client
) -> None:
    assert api.get("/messages").status_code == 200  # now cached by the server
    in_db(server.settings, lambda db: accounts.change_password(db, "alice", "brand new password"))
    assert api.get("/messages").status_code == 401
    with server.client(Account("alice", "brand new password")) as renewed:
        assert renewed.get("/messages").status_code == 200


def test_deleting_a_user_stops_their_credentials_and_removes_their_messages(
    server: LiveServer, alice: Account, api: httpx.Client
) -> None:
    body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "x"}}
    assert api.post("/messages", json=body).status_code == 200
    in_db(server.settings, lambda db: accounts.delete_user(db, "alice"))
    assert api.get("/messages").status_code == 401
    again = server.create_user("alice")
    with server.client(again) as fresh:
        assert fresh.get("/messages").json() == []


def test_first_start_creates_one_account_once(migrated: Settings) -> None:
    first = in_db(migrated, accounts.bootstrap)
    assert first is not None
    assert first.login == "admin"
    assert in_db(migrated, accounts.bootstrap) is None
    in_db(migrated, lambda db: accounts.delete_user(db, "admin"))
    assert in_db(migrated, accounts.bootstrap) is None


def test_first_start_creates_nothing_when_accounts_exist(migrated: Settings) -> None:
    in_db(migrated, lambda db: accounts.create_user(db, "ivy", "long enough pw"))
    assert in_db(migrated, accounts.bootstrap) is None
    assert [u.login for u in in_db(migrated, accounts.list_users)] == ["ivy"]
