"""The dashboard's live stream hears of changes made anywhere (API send and cancel, the
worker's expiry and stale-claim release), and its sign-in shares the API's throttle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.clients import TLS
from tests.conftest import Account, LiveServer, make_settings, running
from tests.test_phones import Api, _true, eventually, phone, run
from tests.web_support import Dashboard, alerts_of


@pytest.fixture
def quick_server(tmp_path: Path) -> Iterator[LiveServer]:
    """Short timers: the worker runs every 0.2 s, silent phones' claims go back after 2 s."""
    settings = make_settings(
        tmp_path / "data", worker_interval_seconds=0.2, release_after_seconds=2,
        sse_keepalive_seconds=1, web_live_keepalive_seconds=1, presence_flush_seconds=0.5,
    )  # fmt: skip
    with running(settings) as live:
        yield live


async def _lines_until(lines: AsyncIterator[str], wanted: str) -> None:
    async for line in lines:
        if line == wanted:
            return
    raise AssertionError(f"the stream ended before {wanted!r}")


async def told_after(
    server: LiveServer, web: Dashboard, change: Callable[[], Awaitable[object]]
) -> None:
    """Open the dashboard's live stream, make `change`, and wait for `event: changed`."""
    cookies = {"smsgw_session": web.http.cookies["smsgw_session"]}
    client = httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=30, verify=TLS)
    async with client, client.stream("GET", "/dashboard/live") as stream:
        lines = stream.aiter_lines()
        await _lines_until(lines, "event: ready")
        await change()
        await asyncio.wait_for(_lines_until(lines, "event: changed"), 15)


def signed_in(server: LiveServer, account: Account) -> Dashboard:
    web = Dashboard(server)
    assert web.sign_in(account).status_code == 303
    return web


def test_api_send_and_cancel_reach_the_dashboards_live_stream(quick_server: LiveServer) -> None:
    alice = quick_server.create_user("alice")
    web = signed_in(quick_server, alice)
    ids: list[str] = []

    async def scenario() -> None:
        api = Api(quick_server, alice)

        async def send() -> None:
            ids.append(await api.send("from the API"))

        await told_after(quick_server, web, send)
        await told_after(quick_server, web, lambda: api.client.delete(f"/messages/{ids[0]}"))
        assert (await api.state(ids[0]))["state"] == "Cancelled"

    run(scenario)
    web.close()


def test_another_users_send_is_not_announced(quick_server: LiveServer) -> None:
    alice, bob = quick_server.create_user("alice"), quick_server.create_user("bob")
    web = signed_in(quick_server, alice)

    async def scenario() -> None:
        async def bob_sends() -> None:
            await Api(quick_server, bob).send("bob's")

        with pytest.raises(TimeoutError):
            await told_after(quick_server, web, bob_sends)

    run(scenario)
    web.close()


def test_the_workers_expiry_reaches_the_live_stream(quick_server: LiveServer) -> None:
    alice = quick_server.create_user("alice")
    web = signed_in(quick_server, alice)

    async def scenario() -> None:
        api = Api(quick_server, alice)
        soon = datetime.now(UTC) + timedelta(seconds=1.5)
        message_id = await api.send("expires", validUntil=soon.isoformat())

        async def wait() -> None:  # the send's own notice came before the stream opened
            await asyncio.sleep(0)

        await told_after(quick_server, web, wait)
        assert (await api.state(message_id))["state"] == "Failed"

    run(scenario)
    web.close()


def test_releasing_a_silent_phones_claim_reaches_the_live_stream(quick_server: LiveServer) -> None:
    alice = quick_server.create_user("alice")
    web = signed_in(quick_server, alice)

    async def scenario() -> None:
        api = Api(quick_server, alice)
        message_id = await api.send("claimed, then released")
        silent = phone(quick_server, alice, sse=False, pull_interval=1e6, paused=True)
        await silent.start()
        await eventually(lambda: _true(message_id in silent.messages))
        await silent.kill()

        async def nothing() -> None:
            await asyncio.sleep(0)

        await told_after(quick_server, web, nothing)
        state = await api.state(message_id)
        assert state["state"] == "Pending" and state.get("deviceId") is None

    run(scenario)
    web.close()


def test_dashboard_sign_in_shares_the_apis_failed_sign_in_throttle(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "data", auth_failures_per_login=3, auth_failures_per_address=5,
        web_login_rate_limit=0,
    )  # fmt: skip
    with running(settings) as server:
        alice, bob = server.create_user("alice"), server.create_user("bob")
        web = Dashboard(server)
        assert [web.sign_in(alice, "wrong").status_code for _ in range(3)] == [401] * 3
        blocked = web.sign_in(alice)  # the right password, but the login is blocked
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        assert alerts_of(blocked.text)[0].startswith("Too many failed sign-ins; try again in")
        assert "smsgw_session" not in blocked.headers.get("set-cookie", "")
        with server.client(alice) as api:
            assert api.get("/messages").status_code == 429  # the same throttle as the API
        with server.client(Account("bob", "wrong")) as api:
            assert api.get("/messages").status_code == 401  # the address's 4th failure
        assert web.sign_in(bob, "wrong").status_code == 401  # and its 5th
        assert web.sign_in(bob).status_code == 429  # the address is blocked now
        web.close()


def test_guessing_the_current_password_on_the_account_page_is_throttled(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", auth_failures_per_login=3, web_login_rate_limit=0)
    with running(settings) as server:
        alice = server.create_user("alice")
        web = Dashboard(server)
        assert web.sign_in(alice).status_code == 303  # e.g. a session left open somewhere
        form = {"new": "a brand new secret", "confirm": "a brand new secret"}
        guesses = [
            web.post("/dashboard/account/password", {**form, "current": f"guess {n}"})
            for n in range(4)
        ]
        assert [r.status_code for r in guesses] == [400, 400, 400, 429]
        assert alerts_of(guesses[-1].text)[0].startswith("Too many failed sign-ins")
        with server.client(Account("alice", "guess 9")) as api:
            assert api.get("/messages").status_code == 429  # the same throttle as the API
        web.close()
