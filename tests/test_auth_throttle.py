"""Failed Basic sign-ins are throttled per client address and per login (rule: docs/auth.md)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from smsgw.api.ratelimit import AuthThrottle
from tests.conftest import LiveServer, make_settings, running

WINDOW = 2
PASSWORD = "correct horse battery"


def throttled_server(tmp_path: Path, per_address: int, per_login: int) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path / "data",
        auth_failure_window_seconds=WINDOW,
        auth_failures_per_address=per_address,
        auth_failures_per_login=per_login,
    )
    with running(settings) as server:
        yield server


@pytest.fixture
def per_address(tmp_path: Path) -> Iterator[LiveServer]:
    yield from throttled_server(tmp_path, per_address=3, per_login=100)


@pytest.fixture
def per_login(tmp_path: Path) -> Iterator[LiveServer]:
    yield from throttled_server(tmp_path, per_address=100, per_login=3)


def get(server: LiveServer, login: str, password: str, path: str = "/messages") -> httpx.Response:
    with httpx.Client(base_url=server.api, auth=(login, password), timeout=30) as client:
        return client.get(path)


def test_failures_from_one_address_get_429_with_retry_after_until_the_window_passes(
    per_address: LiveServer,
) -> None:
    per_address.create_user("alice", PASSWORD)
    per_address.create_user("bob", PASSWORD)
    assert [get(per_address, "alice", f"guess {i}").status_code for i in range(3)] == [401] * 3

    refused = get(per_address, "bob", PASSWORD)  # another login, same address, never signed in
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW
    assert refused.json()["message"].startswith("too many failed sign-ins; try again in")

    time.sleep(int(refused.headers["Retry-After"]) + 0.2)
    assert get(per_address, "bob", PASSWORD).status_code == 200


def test_failures_on_one_login_block_that_login_only_and_not_for_long(
    per_login: LiveServer,
) -> None:
    per_login.create_user("alice", PASSWORD)
    per_login.create_user("bob", PASSWORD)
    assert [get(per_login, "alice", f"guess {i}").status_code for i in range(3)] == [401] * 3

    assert get(per_login, "alice", PASSWORD).status_code == 429  # not verified here before
    assert get(per_login, "alice", "guess 4").status_code == 429  # the attacker learns nothing
    assert get(per_login, "bob", PASSWORD).status_code == 200

    time.sleep(WINDOW + 0.2)
    assert get(per_login, "alice", PASSWORD).status_code == 200


def test_the_mobile_api_basic_routes_share_the_throttle(per_login: LiveServer) -> None:
    per_login.create_user("alice", PASSWORD)
    mobile = per_login.url + "/api/mobile/v1"
    with httpx.Client(base_url=mobile, auth=("alice", "guess"), timeout=30) as client:
        assert [client.get("/user/code").status_code for _ in range(3)] == [401] * 3
        assert client.get("/user/code").status_code == 429
    assert get(per_login, "alice", PASSWORD).status_code == 429


def test_the_throttle_counts_in_a_sliding_window() -> None:
    throttle = AuthThrottle(per_address=2, per_login=5, window=0.3)
    assert throttle.blocked_for("1.2.3.4", "alice") is None
    throttle.failed("1.2.3.4", "alice")
    throttle.failed("1.2.3.4", "bob")
    assert throttle.blocked_for("1.2.3.4", "carol") == 1
    assert throttle.blocked_for("5.6.7.8", "alice") is None
    time.sleep(0.35)
    assert throttle.blocked_for("1.2.3.4", "carol") is None


def test_zero_turns_a_limit_off() -> None:
    throttle = AuthThrottle(per_address=0, per_login=0, window=60)
    for _ in range(100):
        throttle.failed("1.2.3.4", "alice")
    assert throttle.blocked_for("1.2.3.4", "alice") is None


def test_made_up_logins_are_kept_by_their_first_64_characters() -> None:
    throttle = AuthThrottle(per_address=0, per_login=1, window=60)
    throttle.failed("1.2.3.4", "x" * 64 + "a" * 100_000)
    assert throttle.blocked_for("5.6.7.8", "x" * 64 + "b") == 60
    assert len(next(iter(throttle.logins._events))) == 64
