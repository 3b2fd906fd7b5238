"""Failed Basic sign-ins are throttled per client address and per login (rule: docs/auth.md).

The throttle's window runs on a clock these tests advance: a slow, busy machine (each failed
sign-in spends an Argon2 hash) must not let failures leave the window before the test looks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from smsgw.accounts.throttle import AuthThrottle
from smsgw.api.deps import AppContext
from tests.clients import TLS
from tests.conftest import LiveServer, ServerThread, make_settings

WINDOW = 60
PASSWORD = "correct horse battery"


class SteppedClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


class ThrottledServer(LiveServer):
    clock: SteppedClock


def throttled_server(tmp_path: Path, per_address: int, per_login: int) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path / "data",
        auth_failure_window_seconds=WINDOW,
        auth_failures_per_address=per_address,
        auth_failures_per_login=per_login,
    )
    thread = ServerThread(settings)
    thread.start()
    try:
        app = thread.server.config.app
        assert isinstance(app, FastAPI)
        context: AppContext = app.state.context
        server = ThrottledServer(f"http://127.0.0.1:{thread.port}", settings)
        server.clock = SteppedClock()
        context.auth_throttle.set_clock(server.clock)
        yield server
    finally:
        thread.stop()


@pytest.fixture
def per_address(tmp_path: Path) -> Iterator[LiveServer]:
    yield from throttled_server(tmp_path, per_address=3, per_login=100)


@pytest.fixture
def per_login(tmp_path: Path) -> Iterator[LiveServer]:
    yield from throttled_server(tmp_path, per_address=100, per_login=3)


def clock_of(server: LiveServer) -> SteppedClock:
    assert isinstance(server, ThrottledServer)
    return server.clock


def get(server: LiveServer, login: str, password: str, path: str = "/messages") -> httpx.Response:
    with httpx.Client(
        base_url=server.api, auth=(login, password), timeout=30, verify=TLS
    ) as client:
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

    clock_of(per_address).advance(int(refused.headers["Retry-After"]) - 1)
    assert get(per_address, "bob", PASSWORD).status_code == 429  # not yet
    clock_of(per_address).advance(1)
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

    clock_of(per_login).advance(WINDOW)
    assert get(per_login, "alice", PASSWORD).status_code == 200


def test_the_mobile_api_basic_routes_share_the_throttle(per_login: LiveServer) -> None:
    per_login.create_user("alice", PASSWORD)
    mobile = per_login.url + "/api/mobile/v1"
    with httpx.Client(base_url=mobile, auth=("alice", "guess"), timeout=30, verify=TLS) as client:
        assert [client.get("/user/code").status_code for _ in range(3)] == [401] * 3
        assert client.get("/user/code").status_code == 429
    assert get(per_login, "alice", PASSWORD).status_code == 429


def test_the_throttle_counts_in_a_sliding_window() -> None:
    clock = SteppedClock()
    throttle = AuthThrottle(per_address=2, per_login=5, window=10, clock=clock)
    assert throttle.blocked_for("1.2.3.4", "alice") is None
    throttle.failed("1.2.3.4", "alice")
    clock.advance(4)
    throttle.failed("1.2.3.4", "bob")
    assert throttle.blocked_for("1.2.3.4", "carol") == 6
    assert throttle.blocked_for("5.6.7.8", "alice") is None
    clock.advance(6)  # the first failure leaves the window; one is left
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


def test_throttles_of_several_processes_count_each_others_attempts() -> None:
    """What one process counts or takes back, it tells the others (app.share_limits, here
    wired by hand), which count it too: a budget is not multiplied by adding processes."""
    clock = SteppedClock()
    here = AuthThrottle(per_address=5, per_login=3, window=10, clock=clock)
    there = AuthThrottle(per_address=5, per_login=3, window=10, clock=clock)
    for name in ("addresses", "logins", "codes"):
        mine, theirs = getattr(here, name), getattr(there, name)
        mine.relay = lambda op, key, stamp, theirs=theirs: theirs.heard("here", op, key, stamp)
        theirs.relay = lambda op, key, stamp, mine=mine: mine.heard("there", op, key, stamp)
    right = here.attempt("1.2.3.4", "alice")  # counted everywhere before its check...
    assert len(there.logins._events["alice"]) == 1
    here.release(right)  # ...and taken back everywhere once it proved right
    assert len(there.logins._events["alice"]) == 0
    here.failed("1.2.3.4", "alice")
    there.failed("5.6.7.8", "alice")
    clock.advance(4)
    here.failed("9.9.9.9", "alice")
    assert here.blocked_for("1.1.1.1", "alice") == 6  # three failures, wherever they were
    assert there.blocked_for("1.1.1.1", "alice") == 6
    clock.advance(6)  # the first two leave the window on both
    assert there.blocked_for("1.1.1.1", "alice") is None
    before = list(here.logins._events["alice"])
    here.logins.heard("a stranger", "-", "alice", 0.0)  # taking back what was never counted
    assert list(here.logins._events["alice"]) == before
