"""A blocked sign-in stays blocked for every guess, right or wrong, on every route that takes
a secret, until the block ends (rules in docs/auth.md). Time moves by the injected clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from smsgw.domain import clock
from tests.clients import TLS
from tests.conftest import Account, LiveServer, make_settings, running
from tests.web_support import Dashboard

WINDOW = 300
MOBILE = "/api/mobile/v1"
PRIVATE_TOKEN = "a private token of thirty-two characters or more"


class FakeMonotonic:
    """The monotonic clock of the throttle, moved forward by the test."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def later() -> Iterator[FakeMonotonic]:
    fake = FakeMonotonic()
    clock.set_monotonic(fake)
    yield fake
    clock.set_monotonic(time.monotonic)


def throttled(tmp_path: Path, per_address: int, per_login: int) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path / "data",
        auth_failure_window_seconds=WINDOW,
        auth_failures_per_address=per_address,
        auth_failures_per_login=per_login,
        web_login_rate_limit=0,
        private_token=PRIVATE_TOKEN,
    )
    with running(settings) as server:
        yield server


@pytest.fixture
def per_login(tmp_path: Path, later: FakeMonotonic) -> Iterator[LiveServer]:
    yield from throttled(tmp_path, per_address=0, per_login=3)


@pytest.fixture
def per_address(tmp_path: Path, later: FakeMonotonic) -> Iterator[LiveServer]:
    yield from throttled(tmp_path, per_address=3, per_login=0)


def status(server: LiveServer, account: Account, path: str = "/messages") -> int:
    with server.client(account) as client:
        return client.get(path).status_code


def mobile_statuses(server: LiveServer, account: Account) -> list[int]:
    """The phone's Basic routes: a one-time code, registering a phone."""
    with server.client(account, prefix=MOBILE) as phone:
        return [
            phone.get("/user/code").status_code,
            phone.post("/device", json={"name": "phone"}).status_code,
        ]


def test_a_blocked_login_refuses_its_right_password_even_one_verified_before(
    per_login: LiveServer, later: FakeMonotonic
) -> None:
    alice = per_login.create_user("alice")
    assert status(per_login, alice) == 200  # verified: in the credential cache now
    with per_login.client() as attacker:
        guesses = [
            attacker.get("/messages", auth=("alice", f"guess {n}")).status_code for n in range(300)
        ]
    assert guesses == [401] * 3 + [429] * 297
    assert status(per_login, alice) == 429  # was 200: the cache answered before the throttle
    assert mobile_statuses(per_login, alice) == [429, 429]
    web = Dashboard(per_login)
    assert web.sign_in(alice).status_code == 429
    later.advance(WINDOW + 1)  # the block ends one window after the last counted failure
    assert status(per_login, alice) == 200
    assert web.sign_in(alice).status_code == 303
    web.close()


def test_a_blocked_address_refuses_every_login_even_pairs_verified_before(
    per_address: LiveServer, later: FakeMonotonic
) -> None:
    alice, bob = per_address.create_user("alice"), per_address.create_user("bob")
    assert status(per_address, bob) == 200
    assert [status(per_address, Account("alice", "guess")) for _ in range(4)] == [401] * 3 + [429]
    assert status(per_address, bob) == 429
    assert mobile_statuses(per_address, bob) == [429, 429]
    later.advance(WINDOW + 1)
    assert status(per_address, alice) == 200


def test_a_success_does_not_clear_the_failures_of_others(per_login: LiveServer) -> None:
    """Else an application signing in with Basic on every request would reset the count for
    an attacker guessing from elsewhere, and the per-login limit would hold nothing."""
    alice = per_login.create_user("alice")
    assert [status(per_login, Account("alice", "guess")) for _ in range(2)] == [401, 401]
    assert status(per_login, alice) == 200
    assert status(per_login, Account("alice", "another guess")) == 401  # the third failure
    assert status(per_login, alice) == 429


def test_concurrent_guesses_cannot_overshoot_the_limit(per_login: LiveServer) -> None:
    """Every guess is counted before its (slow) check: at most the limit are ever checked."""
    per_login.create_user("alice")

    async def guesses() -> list[int]:
        async with httpx.AsyncClient(base_url=per_login.api, timeout=60, verify=TLS) as client:
            answers = await asyncio.gather(
                *(client.get("/messages", auth=("alice", f"guess {n}")) for n in range(30))
            )
        return sorted(answer.status_code for answer in answers)

    assert asyncio.run(guesses()) == [401] * 3 + [429] * 27


def test_concurrent_first_sign_ins_with_the_right_password_all_pass(
    per_login: LiveServer,
) -> None:
    """The same pair arriving at once is checked (and counted) once, not once per request."""
    alice = per_login.create_user("alice")

    async def sign_ins() -> set[int]:
        auth = (alice.login, alice.password)
        async with httpx.AsyncClient(
            base_url=per_login.api, timeout=60, auth=auth, verify=TLS
        ) as client:
            answers = await asyncio.gather(*(client.get("/messages") for _ in range(20)))
        return {answer.status_code for answer in answers}

    assert asyncio.run(sign_ins()) == {200}
    assert [status(per_login, Account("alice", "guess")) for _ in range(4)] == [401] * 3 + [429]


def test_wrong_one_time_codes_count_and_a_blocked_address_refuses_the_right_one(
    per_address: LiveServer, later: FakeMonotonic
) -> None:
    alice = per_address.create_user("alice")
    with per_address.client(alice, prefix=MOBILE) as phone:
        code = phone.get("/user/code").json()["code"]
    with per_address.client(prefix=MOBILE) as phone:
        register = [
            phone.post("/device", json={"name": "p"}, headers={"Authorization": f"Code {guess}"})
            for guess in ("aaaaaa", "bbbbbb", "cccccc", code)
        ]
        assert [answer.status_code for answer in register] == [401, 401, 401, 429]
        assert register[-1].json()["message"].startswith("too many failed sign-ins")
        later.advance(WINDOW + 1)
        answer = phone.post(
            "/device", json={"name": "p"}, headers={"Authorization": f"Code {code}"}
        )
        assert answer.status_code == 201


def test_wrong_private_tokens_count_as_failed_sign_ins(
    per_address: LiveServer, later: FakeMonotonic
) -> None:
    def register(token: str) -> int:
        with per_address.client(prefix=MOBILE) as phone:
            headers = {"Authorization": f"Bearer {token}"}
            return phone.post("/device", json={"name": "p"}, headers=headers).status_code

    assert [register(f"guess {n}") for n in range(3)] == [401] * 3
    assert register(PRIVATE_TOKEN) == 429
    later.advance(WINDOW + 1)
    assert register(PRIVATE_TOKEN) == 201
