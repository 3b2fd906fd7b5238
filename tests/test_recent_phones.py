"""Phones' tokens found valid a moment ago (devices/recent.py): the pull and report fast paths
take them without a read; what changes a phone in this process is seen at once, and what
another process or node changes is seen once the entry ends, without a message going to a
phone that is gone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsgw.config import Settings
from smsgw.context import AppContext
from smsgw.db.engine import database_for
from smsgw.devices import repository as device_repository
from smsgw.devices import service as devices
from smsgw.devices.recent import RecentPhones
from smsgw.devices.service import DeviceAuth
from tests.conftest import Account, LiveServer, ServerThread, make_settings

MOBILE = "/api/mobile/v1"
APP = {"User-Agent": "me.capcom.smsgateway/1.68.0"}
SIM_1 = [{"slotIndex": 0, "simNumber": 1}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def auth(device_id: str) -> DeviceAuth:
    return DeviceAuth(device_id, 1)


def test_an_entry_lasts_its_seconds_and_no_longer() -> None:
    clock = Clock()
    recent = RecentPhones(seconds=2.0, monotonic=clock)
    recent.put("h1", auth("a"))
    clock.now += 1.999
    assert recent.get("h1") == auth("a")
    clock.now += 0.001
    assert recent.get("h1") is None
    assert len(recent) == 0  # an ended entry goes when found ended
    assert recent.get("never-put") is None


def test_forget_drops_every_token_of_the_phone_and_only_those() -> None:
    recent = RecentPhones(monotonic=Clock())
    recent.put("h1", auth("a"))
    recent.put("h2", auth("a"))
    recent.put("h3", auth("b"))
    recent.forget("a")
    assert recent.get("h1") is None and recent.get("h2") is None
    assert recent.get("h3") == auth("b")


def test_the_least_recently_put_go_first_beyond_the_size() -> None:
    recent = RecentPhones(max_size=2, monotonic=Clock())
    recent.put("h1", auth("a"))
    recent.put("h2", auth("b"))
    recent.put("h1", auth("a"))  # put again: now the newest
    recent.put("h3", auth("c"))
    assert recent.get("h2") is None
    assert recent.get("h1") == auth("a") and recent.get("h3") == auth("c")


@pytest.mark.parametrize("kwargs", [{"seconds": 0}, {"max_size": 0}])
def test_nothing_is_kept_when_turned_off(kwargs: dict[str, Any]) -> None:
    recent = RecentPhones(monotonic=Clock(), **kwargs)
    recent.put("h1", auth("a"))
    assert recent.get("h1") is None


class Live:
    """A server in this process, whose context's clock of recent phones the test moves."""

    def __init__(self, thread: ServerThread, settings: Settings, clock: Clock) -> None:
        self.thread, self.clock = thread, clock
        self.server = LiveServer(f"http://127.0.0.1:{thread.port}", settings)

    @property
    def context(self) -> AppContext:
        context: AppContext = self.thread.server.config.app.state.context  # type: ignore[attr-defined]
        return context


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    settings = make_settings(tmp_path / "data")
    thread = ServerThread(settings)
    thread.start()
    clock = Clock()
    live = Live(thread, settings, clock)
    live.context.recent_phones = RecentPhones(seconds=2.0, monotonic=clock)
    try:
        yield live
    finally:
        thread.stop()


@pytest.fixture
def owner(live: Live) -> Account:
    return live.server.create_user("owner")


@pytest.fixture
def mobile(live: Live) -> Iterator[httpx.Client]:
    with live.server.client(prefix=MOBILE) as client:
        client.headers.update(APP)
        yield client


@pytest.fixture
def api(live: Live, owner: Account) -> Iterator[httpx.Client]:
    with live.server.client(owner) as client:
        yield client


def register(mobile: httpx.Client, owner: Account, sims: list[dict[str, int]]) -> dict[str, Any]:
    body = {"name": "Google/oriole", "simCards": sims}
    answer = mobile.post("/device", json=body, auth=(owner.login, owner.password))
    assert answer.status_code == 201, answer.text
    device: dict[str, Any] = answer.json()
    return device


def bearer(device: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {device['token']}"}


def send(api: httpx.Client, **extra: Any) -> str:
    body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "hi"}} | extra
    answer = api.post("/messages", json=body)
    assert answer.status_code in (200, 202), answer.text
    message_id: str = answer.json()["id"]
    return message_id


def report(mobile: httpx.Client, device: dict[str, Any]) -> httpx.Response:
    return mobile.patch("/message", json=[], headers=bearer(device))


def test_the_hot_paths_read_a_phone_once_in_its_window(
    live: Live, mobile: httpx.Client, owner: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    phone = register(mobile, owner, SIM_1)
    # The token lookups themselves are counted, not every read of the database: the
    # server's background tasks (sweeps, space reclaiming) read too, whenever their time
    # comes, and on a busy machine that may be in the middle of this test.
    reads: list[str] = []
    original = device_repository.auth_by_token_hash

    async def counted(conn: Any, hashed: str) -> Any:
        reads.append("read")
        return await original(conn, hashed)

    monkeypatch.setattr(device_repository, "auth_by_token_hash", counted)
    for _ in range(3):
        assert mobile.get("/message", headers=bearer(phone)).status_code == 200
        assert report(mobile, phone).status_code == 204
    assert len(reads) == 1  # the first pull's token lookup; the rest found it recent
    live.clock.now += 2.0
    assert mobile.get("/message", headers=bearer(phone)).status_code == 200
    assert len(reads) == 2  # the window ended: read again


def test_a_wrong_token_is_never_kept(live: Live, mobile: httpx.Client) -> None:
    for _ in range(2):
        answer = mobile.get("/message", headers={"Authorization": "Bearer not-a-token"})
        assert answer.status_code == 401
    assert len(live.context.recent_phones) == 0


def test_a_phone_deleted_here_is_refused_at_once(
    live: Live, mobile: httpx.Client, api: httpx.Client, owner: Account
) -> None:
    phone = register(mobile, owner, SIM_1)
    assert mobile.get("/message", headers=bearer(phone)).status_code == 200
    assert api.delete(f"/devices/{phone['id']}").status_code == 204
    assert mobile.get("/message", headers=bearer(phone)).status_code == 401
    assert report(mobile, phone).status_code == 401


def test_a_new_sim_list_is_used_by_the_next_pull(
    live: Live, mobile: httpx.Client, api: httpx.Client, owner: Account
) -> None:
    phone = register(mobile, owner, SIM_1)
    assert mobile.get("/message", headers=bearer(phone)).json() == []  # now recent, SIM 1 only
    sent = send(api, simNumber=2)
    assert mobile.get("/message", headers=bearer(phone)).json() == []  # no SIM 2: not for it
    both = [*SIM_1, {"slotIndex": 1, "simNumber": 2}]
    changed = mobile.patch(
        "/device", json={"id": phone["id"], "simCards": both}, headers=bearer(phone)
    )
    assert changed.status_code == 204
    pulled = mobile.get("/message", headers=bearer(phone)).json()
    assert [m["id"] for m in pulled] == [sent]


def test_a_phone_deleted_elsewhere_gets_nothing_then_is_refused(
    live: Live, mobile: httpx.Client, api: httpx.Client, owner: Account
) -> None:
    gone = register(mobile, owner, SIM_1)
    other = register(mobile, owner, SIM_1)
    assert mobile.get("/message", headers=bearer(gone)).status_code == 200  # now recent

    async def delete_elsewhere() -> None:  # as another process or node would
        db = database_for(live.context.settings)
        try:
            user_id = (await devices.get(db, gone["id"])).user_id
            await devices.delete(db, user_id, gone["id"])
        finally:
            await db.dispose()

    asyncio.run(delete_elsewhere())
    sent = send(api)
    # Within its window the deleted phone's token is still taken, but its pull finds no
    # phone: it claims nothing, and its report changes nothing.
    assert mobile.get("/message", headers=bearer(gone)).json() == []
    assert report(mobile, gone).status_code == 204
    assert [m["id"] for m in mobile.get("/message", headers=bearer(other)).json()] == [sent]
    live.clock.now += 2.0
    assert mobile.get("/message", headers=bearer(gone)).status_code == 401
    assert report(mobile, gone).status_code == 401
