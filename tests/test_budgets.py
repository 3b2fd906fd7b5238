"""Per-phone budgets (routing/budgets.py): a phone is handed at most so many SMS parts a minute
and a day, through a real server, with the simulated phone and with the mobile API's pulls;
the clock is moved (`at`), never waited for."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from smsgw.config import load_settings
from smsgw.db.engine import database_for
from smsgw.routing import service as routing
from smsgw.routing.budgets import Limits, message_parts
from smsgw.routing.repository import Phone as RoutingPhone
from tests.clients import TLS
from tests.conftest import (
    CLOCK_START,
    Account,
    LiveServer,
    database_rows,
    make_settings,
    running,
)
from tests.test_phones import Api, _true, eventually, phone, run
from tests.web_support import PHONE as PHONE_WIDTH
from tests.web_support import Dashboard, Problems, alerts_of, chromium, screenshot

MOBILE = "/api/mobile/v1"
NUMBER = "+12025550100"
#: Texts of 1, 2 and 3 parts: GSM-7 up to 160 characters in one, then 153 a part; UCS-2
#: (Cyrillic) 70 in one, then 67 a part.
ONE, TWO, THREE_UCS2 = "hi", "x" * 161, "Ж" * 150


def budget_settings(tmp_path: Path, **values: Any) -> Any:
    """A server whose worker wakes phones every 0.2 s (when the clock moves, they pull)."""
    return make_settings(tmp_path / "data", worker_interval_seconds=0.2, **values)


@pytest.fixture
def served(tmp_path: Path, at: list[datetime]) -> Iterator[LiveServer]:
    """A server whose phones get 5 parts a minute (and no daily limit), on the moved clock."""
    with running(budget_settings(tmp_path, phone_parts_per_minute=5)) as live:
        yield live


class Phone:
    """A phone driven by hand through the mobile API: each pull is one claim."""

    def __init__(self, server: LiveServer, account: Account, name: str = "Google/oriole") -> None:
        self.url = server.url
        self.http = httpx.Client(base_url=server.url + MOBILE, timeout=30, verify=TLS)
        basic = base64.b64encode(f"{account.login}:{account.password}".encode()).decode()
        answer = self.http.post(
            "/device", json={"name": name}, headers={"Authorization": f"Basic {basic}"}
        )
        assert answer.status_code == 201, answer.text
        self.id: str = answer.json()["id"]
        self.token: str = answer.json()["token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def pull(self) -> list[str]:
        """The ids of the messages the phone is handed (and holds), in pull order."""
        return pull_as(self.url, self.token)

    def sent(self, ids: list[str]) -> None:
        """Report these messages Sent (they no longer count as held)."""
        body = [
            {"id": i, "state": "Sent", "recipients": [{"phoneNumber": NUMBER, "state": "Sent"}]}
            for i in ids
        ]
        assert self.http.patch("/message", json=body).status_code == 204


def pull_as(url: str, token: str) -> list[str]:
    """A pull of the phone whose token this is, from the server at `url`: the ids of the
    messages it is handed (and holds), in pull order."""
    answer = httpx.get(
        url + MOBILE + "/message", headers={"Authorization": f"Bearer {token}"}, verify=TLS
    )
    assert answer.status_code == 200, answer.text
    return [item["id"] for item in answer.json()]


def send(
    api: httpx.Client, text: str = ONE, numbers: tuple[str, ...] = (NUMBER,), **extra: Any
) -> str:
    body = {"phoneNumbers": list(numbers), "textMessage": {"text": text}} | extra
    answer = api.post("/messages", json=body)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def budget_of(api: httpx.Client, device_id: str) -> dict[str, Any]:
    [found] = [d for d in api.get("/devices").json() if d["id"] == device_id]
    return dict(found["budget"])


def test_a_phone_gets_its_minute_budget_then_nothing_until_the_clock_moves_a_minute(
    served: LiveServer, at: list[datetime]
) -> None:
    owner = served.create_user("owner")

    async def scenario() -> None:
        api = Api(served, owner)
        device = phone(served, owner)
        await device.start()
        await eventually(lambda: _true(device.sse_opens > 0))
        ids = [await api.send(f"m{i}") for i in range(8)]

        async def delivered(count: int) -> bool:
            return (await api.states()).count("Delivered") == count

        await eventually(lambda: delivered(5))
        # Nothing more this minute: a pull of the phone's own is handed nothing new.
        assert pull_as(served.url, device.credentials.token) == []  # type: ignore[union-attr]
        assert (await api.states()).count("Pending") == 3
        at[0] = CLOCK_START + timedelta(minutes=1)  # the worker wakes it: it has budget again
        await eventually(lambda: delivered(8))
        assert sorted(m for m, _ in device.sent) == sorted(ids)
        await device.stop()

    run(scenario)


def test_work_goes_to_the_phone_with_budget_left(served: LiveServer, at: list[datetime]) -> None:
    owner = served.create_user("owner")

    async def scenario() -> None:
        api = Api(served, owner)
        thrifty, busy = phone(served, owner), phone(served, owner)
        for device in (thrifty, busy):
            await device.start()
        await eventually(lambda: _true(bool(thrifty.sse_opens and busy.sse_opens)))
        device_id = thrifty.credentials.id  # type: ignore[union-attr]
        # Its own limit: 2 parts a minute; the other phone has the server's 5.
        answer = await api.client.patch(f"/devices/{device_id}", json={"budget": {"perMinute": 2}})
        assert answer.status_code == 200, answer.text
        ids = [await api.send(f"m{i}") for i in range(7)]

        async def all_delivered() -> bool:
            return (await api.states()).count("Delivered") == 7

        await eventually(all_delivered)
        assert len(thrifty.sent) == 2 and len(busy.sent) == 5, (thrifty.sent, busy.sent)
        assert sorted(m for p in (thrifty, busy) for m, _ in p.sent) == sorted(ids)
        for device in (thrifty, busy):
            await device.stop()

    run(scenario)


def test_a_day_budget_holds_until_the_next_utc_day(tmp_path: Path, at: list[datetime]) -> None:
    settings = budget_settings(tmp_path, phone_parts_per_minute=0, phone_parts_per_day=4)
    with running(settings) as server:
        owner = server.create_user("owner")
        with server.client(owner) as api:
            device = Phone(server, owner)
            ids = [send(api, f"m{i}") for i in range(6)]
            handed = device.pull()
            assert len(handed) == 4
            device.sent(handed)
            at[0] = CLOCK_START + timedelta(minutes=1)  # a new minute is not a new day
            assert device.pull() == []
            assert budget_of(api, device.id) | {"own": None} == {
                "perMinute": 0, "perDay": 4, "usedThisMinute": 0, "usedToday": 4, "own": None,
            }  # fmt: skip
            at[0] = CLOCK_START.replace(hour=0) + timedelta(days=1)
            rest = device.pull()
            assert sorted(handed + rest) == sorted(ids)
            assert budget_of(api, device.id)["usedToday"] == 2


def test_multi_part_texts_cost_their_parts_for_every_recipient(
    served: LiveServer, at: list[datetime]
) -> None:
    owner = served.create_user("owner")
    with served.client(owner) as api:
        device = Phone(served, owner)
        long_one = send(api, THREE_UCS2)  # 3 parts
        two_numbers = send(api, ONE, numbers=(NUMBER, "+12025550111"))  # 1 part x 2
        short = send(api, ONE)  # 1 part
        # Newest first (lifo): 1 + 2 = 3 parts fit in 5; the 3-part text would make 6.
        assert device.pull() == [short, two_numbers]
        assert budget_of(api, device.id)["usedThisMinute"] == 3
        at[0] = CLOCK_START + timedelta(minutes=1)
        assert device.pull() == [short, two_numbers, long_one]  # (the first two still held)
        assert budget_of(api, device.id)["usedThisMinute"] == 3


def test_a_message_larger_than_a_whole_minute_goes_alone_in_an_untouched_minute(
    served: LiveServer, at: list[datetime]
) -> None:
    owner = served.create_user("owner")
    with served.client(owner) as api:
        device = Phone(served, owner)
        short = send(api, ONE)
        huge = send(api, TWO, numbers=tuple(f"+1202555010{i}" for i in range(4)))  # 8 parts
        assert device.pull() == [huge]  # newest first, alone: it could never fit in 5
        assert budget_of(api, device.id)["usedThisMinute"] == 8
        at[0] = CLOCK_START + timedelta(minutes=1)
        assert device.pull() == [huge, short]


def test_pinned_messages_wait_for_their_phones_budget(
    served: LiveServer, at: list[datetime]
) -> None:
    owner = served.create_user("owner")
    with served.client(owner) as api:
        device = Phone(served, owner)
        other = Phone(served, owner, name="other")
        pinned = [send(api, TWO, deviceId=device.id) for _ in range(3)]  # 2 parts each
        queued = send(api, ONE)
        assert device.pull() == pinned[:0:-1]  # 4 parts: the third pinned one waits
        assert other.pull() == [queued]  # a queued message goes to the other phone
        device.sent(pinned[:0:-1])
        assert device.pull() == []
        at[0] = CLOCK_START + timedelta(minutes=1)
        assert device.pull() == [pinned[0]]


def test_expedited_messages_are_not_held_back_but_count(
    served: LiveServer, at: list[datetime]
) -> None:
    owner = served.create_user("owner")
    with served.client(owner) as api:
        device = Phone(served, owner)
        normal = [send(api, TWO) for _ in range(3)]  # 2 parts each
        urgent = [send(api, TWO, priority=100) for _ in range(4)]
        handed = device.pull()
        # Priority first: the urgent ones (8 parts, over the 5), then no normal one fits.
        assert handed == urgent[::-1]
        assert budget_of(api, device.id)["usedThisMinute"] == 8
        at[0] = CLOCK_START + timedelta(minutes=1)
        assert device.pull() == urgent[::-1] + normal[:0:-1]


def test_server_processes_sharing_a_database_share_each_phones_budget(
    tmp_path: Path, at: list[datetime]
) -> None:
    settings = budget_settings(tmp_path, phone_parts_per_minute=3)
    with running(settings) as first, running(settings) as second:
        owner = first.create_user("owner")
        with first.client(owner) as api:
            on_first = Phone(first, owner)
            ids = [send(api, ONE) for _ in range(5)]
            handed = on_first.pull()
            assert len(handed) == 3
            on_first.sent(handed)
            assert pull_as(second.url, on_first.token) == []  # the first process spent it
            at[0] = CLOCK_START + timedelta(minutes=1)
            rest = pull_as(second.url, on_first.token)
            assert sorted(handed + rest) == sorted(ids)


def test_the_override_is_the_owners_and_refuses_bad_values(
    served: LiveServer, at: list[datetime]
) -> None:
    owner, stranger = served.create_user("owner"), served.create_user("stranger")
    with served.client(owner) as api, served.client(stranger) as other:
        device = Phone(served, owner)
        answer = api.patch(
            f"/devices/{device.id}", json={"budget": {"perMinute": 7, "perDay": 500}}
        )
        assert answer.status_code == 200
        assert answer.json()["id"] == device.id
        assert answer.json()["budget"] == {
            "perMinute": 7, "perDay": 500, "usedThisMinute": 0, "usedToday": 0,
            "own": {"perMinute": 7, "perDay": 500},
        }  # fmt: skip
        # A key left out stays; null goes back to the server's default.
        answer = api.patch(f"/devices/{device.id}", json={"budget": {"perMinute": None}})
        assert answer.json()["budget"]["own"] == {"perMinute": None, "perDay": 500}
        assert answer.json()["budget"]["perMinute"] == 5
        assert budget_of(api, device.id)["own"] == {"perMinute": None, "perDay": 500}
        missing = other.patch(f"/devices/{device.id}", json={"budget": {"perMinute": 1}})
        assert missing.status_code == 404
        assert missing.json() == {"message": "device not found"}
        assert budget_of(api, device.id)["perMinute"] == 5  # unchanged
        for bad in (
            {"budget": {"perMinute": -1}}, {"budget": {"perMinute": 1.5}},
            {"budget": {"perMinute": "5"}}, {"budget": {"perMinute": True}},
            {"budget": {"perMinute": 1_000_001}}, {"budget": {"perDay": 100_000_001}},
            {"budget": {"perHour": 5}}, {"budget": None}, {}, [],
        ):  # fmt: skip
            answer = api.patch(f"/devices/{device.id}", json=bad)
            assert answer.status_code == 400, (bad, answer.text)
            assert answer.json()["message"]
        assert api.patch(f"/devices/{device.id}", json={"budget": {"perDay": 0}}).status_code == 200
        assert budget_of(api, device.id)["perDay"] == 0


def test_the_phones_page_shows_usage_and_sets_limits_without_javascript(
    served: LiveServer, at: list[datetime]
) -> None:
    owner, stranger = served.create_user("owner"), served.create_user("stranger")
    with served.client(owner) as api:
        device = Phone(served, owner)
        send(api, ONE, numbers=(NUMBER, "+12025550111", "+12025550112"))
        assert len(device.pull()) == 1
    web = Dashboard(served)
    try:
        assert web.sign_in(owner).status_code == 303
        page = web.http.get("/dashboard/phones").text
        assert "3 of 5 this minute" in page and "3 today (UTC), no limit" in page
        form = {"perMinute": "12", "perDay": "1,000"}
        saved = web.post(f"/dashboard/phones/{device.id}/budget", form, page="/dashboard/phones")
        assert saved.status_code == 303
        page = web.http.get(saved.headers["location"]).text
        assert "Budget saved" in page
        assert "3 of 12 this minute" in page and "3 of 1000 today (UTC)" in page
        assert 'name="perMinute" inputmode="numeric" pattern="[0-9]*" size="8" value="12"' in page
        bad = web.post(
            f"/dashboard/phones/{device.id}/budget", {"perMinute": "-3"}, page="/dashboard/phones"
        )
        assert bad.status_code == 400
        assert alerts_of(bad.text)[0].startswith("Per minute: a whole number from 0 to 1,000,000")
        emptied = {"perMinute": "", "perDay": "1000"}
        web.post(f"/dashboard/phones/{device.id}/budget", emptied, page="/dashboard/phones")
        assert "3 of 5 this minute" in web.http.get("/dashboard/phones").text
    finally:
        web.close()
    intruder = Dashboard(served)
    try:
        assert intruder.sign_in(stranger).status_code == 303
        answer = intruder.post(
            f"/dashboard/phones/{device.id}/budget", {"perMinute": "1"}, page="/dashboard/phones"
        )
        assert answer.status_code == 404
    finally:
        intruder.close()


def test_a_message_costs_its_parts_per_recipient_not_opted_out(
    served: LiveServer, at: list[datetime]
) -> None:
    owner = served.create_user("owner")
    with served.client(owner) as api:
        assert api.post("/opt-outs", json={"phoneNumber": "+12025550111"}).status_code == 201
        numbers = (NUMBER, "+12025550111", "+12025550112")
        texts = send(api, THREE_UCS2, numbers=numbers)
        data = api.post(
            "/messages",
            json={
                "phoneNumbers": list(numbers[:2]),
                "dataMessage": {"data": "aGk=", "port": 53739},
            },
        ).json()["id"]
        rows = dict(
            database_rows(
                served.settings, "SELECT ext_id, parts FROM messages WHERE ext_id IN (?, ?)",
                (texts, data),
            )
        )  # fmt: skip
        assert rows == {texts: 3 * 2, data: 1}


def test_parts_and_the_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert message_parts("hi", 3) == 3
    assert message_parts("x" * 160, 1) == 1 and message_parts("x" * 161, 1) == 2
    assert message_parts("Ж" * 70, 1) == 1 and message_parts("Ж" * 71, 2) == 4
    assert message_parts(None, 2) == 2  # a data message: one part per recipient
    monkeypatch.delenv("SMSGW_PHONE_PARTS_PER_MINUTE", raising=False)
    defaults = load_settings(data_dir=tmp_path)
    assert (defaults.phone_parts_per_minute, defaults.phone_parts_per_day) == (30, 0)


def test_a_phone_whose_budget_is_spent_is_told_only_of_expedited_work(
    served: LiveServer, at: list[datetime]
) -> None:
    """What decides whether a report wakes its phone again (routing.has_work_for)."""
    owner = served.create_user("owner")
    [(user_id,)] = database_rows(served.settings, "SELECT id FROM users WHERE login = 'owner'")
    with served.client(owner) as api:
        device = Phone(served, owner)
        as_phone = RoutingPhone(device.id, user_id, None)
        defaults = Limits(5, 0)

        def has_work(limits: Limits | None) -> bool:
            async def look() -> bool:
                db = database_for(served.settings)
                try:
                    return await routing.has_work_for(db, as_phone, limits)
                finally:
                    await db.dispose()

            return asyncio.run(look())

        for _ in range(6):
            send(api, ONE)
        assert has_work(defaults)
        assert len(device.pull()) == 5  # spent
        assert not has_work(defaults) and has_work(None)
        send(api, ONE, priority=100)
        assert has_work(defaults)
        at[0] = CLOCK_START + timedelta(minutes=1)
        assert has_work(defaults)


def test_a_browser_sees_a_phones_budget_and_sets_its_limit(
    tmp_path: Path, at: list[datetime]
) -> None:
    """Chromium at phone width (390 px): the phones page's budget, and its form. The clock
    stands still (`at`), so the minute of the pull is the minute the page shows."""
    with running(budget_settings(tmp_path, phone_parts_per_minute=5)) as server:
        owner = server.create_user("owner")
        with server.client(owner) as api:
            device = Phone(server, owner)
            send(api, ONE, numbers=(NUMBER, "+12025550111"))
            assert len(device.pull()) == 1
        with chromium() as browser:
            context = browser.new_context(base_url=server.url, viewport=PHONE_WIDTH)
            page = context.new_page()
            page.set_default_timeout(15_000)
            problems = Problems(page)
            page.goto("/dashboard")
            page.get_by_label("Login").fill(owner.login)
            page.get_by_label("Password").fill(owner.password)
            page.get_by_role("button", name="Sign in").click()
            page.goto("/dashboard/phones")
            row = page.locator(f'tr[data-device-id="{device.id}"]')
            expect(row.locator(".budget-minute")).to_have_text("2 of 5 this minute")
            row.get_by_text("Set limits").click()
            row.get_by_label("Per minute").fill("12")
            row.get_by_role("button", name="Save limits").click()
            expect(page.get_by_role("status")).to_contain_text("Budget saved")
            expect(row.locator(".budget-minute")).to_have_text("2 of 12 this minute")
            screenshot(page, "phones-budget")
            context.close()
            assert problems.errors == []
