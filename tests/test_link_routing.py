"""Routing rules between an account's phones and its carrier links (routing/rules.py,
docs/links.md "Routing rules"), through a real running smsgw: links bound to the npm `smpp`
simulator (tests/fakes/smsc-sim.js), phones driven by hand through the mobile API (each pull
is one claim) or simulated (tests/fakes/phone.py). The clock is moved (`at`), never waited for.

That a link did *not* take a queued message is shown by a barrier: a message pinned to the
link, sent after it, reaching Delivered. The link claims pinned and queued messages in one
unit of work, so the claim that took the pinned one would have taken the queued one too had
the rule allowed it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from smsgw.cli import app
from tests.clients import TLS
from tests.conftest import CLOCK_START, Account, LiveServer, database_rows, make_settings, running
from tests.fakes.smsc import PASSWORD, USER, Smsc, wait_until
from tests.test_cli import environment
from tests.test_phones import Api, _true, eventually, phone, run

MOBILE = "/api/mobile/v1"
US, UK, DE = "+12025550100", "+447911123456", "+4915112345678"
#: A phone heard from within this many seconds is online (SMSGW_ONLINE_WINDOW_SECONDS).
ONLINE = 60


@pytest.fixture
def live(tmp_path: Path, at: list[datetime]) -> Iterator[LiveServer]:
    """A server on the moved clock: binds give up after 2 s, the worker runs every 0.2 s
    and writes phones' last-seen times as often, a phone is online for 60 s."""
    settings = make_settings(
        tmp_path / "data", link_connect_timeout_seconds=2, worker_interval_seconds=0.2,
        presence_flush_seconds=0.2, sse_keepalive_seconds=1, online_window_seconds=ONLINE,
    )  # fmt: skip
    with running(settings) as server:
        yield server


@pytest.fixture
def alice(live: LiveServer) -> Account:
    return live.create_user("alice")


@pytest.fixture
def api(live: LiveServer, alice: Account) -> Iterator[httpx.Client]:
    with live.client(alice) as client:
        yield client


def cli(server: LiveServer, *args: str, stdin: str | None = None, code: int = 0) -> str:
    result = CliRunner().invoke(
        app, list(args), input=stdin, env=environment(server.settings.data_dir)
    )
    assert result.exit_code == code, result.output
    return result.output


def add_link(server: LiveServer, smsc: Smsc, login: str) -> str:
    said = cli(
        server, "links", "add", "smpp", "--user", login, "--host", "127.0.0.1",
        "--port", str(smsc.port), "--system-id", USER, "--password-stdin", "--source", "SMSGW",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    link_id = said.split()[-1]
    wait_until(lambda: _state(server, link_id) == "bound", what="the link bound")
    return link_id


def _state(server: LiveServer, link_id: str) -> str:
    listed = json.loads(cli(server, "links", "list", "--json"))
    return str(next(link["state"] for link in listed if link["id"] == link_id))


class HandPhone:
    """A phone driven by hand through the mobile API: registered (so heard from now)."""

    def __init__(self, server: LiveServer, account: Account) -> None:
        self.http = httpx.Client(base_url=server.url + MOBILE, timeout=30, verify=TLS)
        basic = base64.b64encode(f"{account.login}:{account.password}".encode()).decode()
        answer = self.http.post(
            "/device", json={"name": "hand"}, headers={"Authorization": f"Basic {basic}"}
        )
        assert answer.status_code == 201, answer.text
        self.id: str = answer.json()["id"]
        self.http.headers["Authorization"] = f"Bearer {answer.json()['token']}"

    def pull(self) -> set[str]:
        """The ids of the messages the phone is handed (claimed now, or held)."""
        answer = self.http.get("/message")
        assert answer.status_code == 200, answer.text
        return {item["id"] for item in answer.json()}


def set_rule(api: httpx.Client, **body: Any) -> dict[str, Any]:
    answer = api.put("/links/routing", json=body)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def send(api: httpx.Client, *numbers: str, **extra: Any) -> str:
    body = {"phoneNumbers": list(numbers or (US,)), "textMessage": {"text": "hi"}} | extra
    answer = api.post("/messages", json=body)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def sender_of(server: LiveServer, message_id: str) -> str | None:
    """The sender holding the message (None: still queued)."""
    [(device_id,)] = database_rows(
        server.settings, "SELECT device_id FROM messages WHERE ext_id = ?", [message_id]
    )
    return None if device_id is None else str(device_id)


def delivered_by(server: LiveServer, api: httpx.Client, message_id: str) -> str | None:
    """Wait until the message is Delivered; the sender that delivered it."""
    wait_until(
        lambda: api.get(f"/messages/{message_id}").json()["state"] == "Delivered",
        what=f"{message_id} Delivered",
    )
    return sender_of(server, message_id)


def barrier(server: LiveServer, api: httpx.Client, link_id: str) -> None:
    """A claim of the link ran after every message sent so far (see the module's doc)."""
    assert delivered_by(server, api, send(api, DE, deviceId=link_id)) == link_id


# The rule itself: API and CLI.


def test_the_rule_is_shared_until_set_and_each_put_replaces_it_whole(
    live: LiveServer, alice: Account, api: httpx.Client
) -> None:
    shared = {"mode": "shared", "prefixes": [], "failoverAfter": 0}
    assert api.get("/links/routing").json() == shared

    wanted = {"mode": "prefix", "prefixes": ["+44", "+49", "+44"], "failoverAfter": 30}
    expected = {"mode": "prefix", "prefixes": ["+44", "+49"], "failoverAfter": 30}
    assert set_rule(api, **wanted) == expected
    assert api.get("/links/routing").json() == expected
    assert set_rule(api, mode="links") == {"mode": "links", "prefixes": [], "failoverAfter": 0}
    assert set_rule(api, mode="phones", failoverAfter=30.0)["failoverAfter"] == 30  # JSON's 30

    said = cli(live, "links", "routing", "--user", "alice", "--mode", "prefix",
               "--prefix", "+44", "--prefix", "+49", "--failover-after", "30")  # fmt: skip
    assert said.strip() == "alice: mode prefix, prefixes +44 +49, failover after 30 s"
    assert api.get("/links/routing").json() == expected
    listed = json.loads(cli(live, "links", "routing", "--user", "alice", "--json"))
    assert listed == expected

    live.create_user("bob")  # another account keeps its own (none)
    assert cli(live, "links", "routing", "--user", "bob").strip() == "bob: mode shared"


def test_the_cli_refuses_a_bad_rule_with_the_reason(live: LiveServer, alice: Account) -> None:
    said = cli(live, "links", "routing", "--user", "alice", "--mode", "prefix", code=1)
    assert "prefixes: mode prefix needs at least one prefix" in said
    said = cli(live, "links", "routing", "--user", "alice", "--prefix", "+44", code=1)
    assert "give --mode too" in said


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (
            {"mode": "carrier"},
            "mode: Input should be 'shared', 'phones', 'links', 'prefix' or 'fallback'",
        ),
        ({}, "mode"),
        ({"mode": 1}, "mode"),
        ({"mode": "prefix"}, "prefixes: mode prefix needs at least one prefix"),
        ({"mode": "prefix", "prefixes": ["44"]}, "prefixes[0]: String should match pattern"),
        (
            {"mode": "prefix", "prefixes": ["+44", "+4x"]},
            "prefixes[1]: String should match pattern",
        ),
        ({"mode": "prefix", "prefixes": ["+1234567890123456"]}, "prefixes[0]: String"),
        ({"mode": "prefix", "prefixes": "+44"}, "prefixes"),
        (
            {"mode": "prefix", "prefixes": [f"+{n}" for n in range(101)]},
            "prefixes: List should have at most 100 items",
        ),
        ({"mode": "links", "prefixes": ["+44"]}, "prefixes: only mode prefix uses prefixes"),
        ({"mode": "shared", "failoverAfter": 30}, "failoverAfter: in mode shared"),
        (
            {"mode": "phones", "failoverAfter": -1},
            "failoverAfter: Input should be greater than or equal to 0",
        ),
        (
            {"mode": "phones", "failoverAfter": 604801},
            "failoverAfter: Input should be less than or equal to 604800",
        ),
        ({"mode": "phones", "failoverAfter": "30"}, "failoverAfter"),
        ({"mode": "phones", "failoverAfter": True}, "failoverAfter"),
        ({"mode": "phones", "failover_after": 30}, "failover_after"),
    ],
)
def test_every_bad_rule_is_refused_with_400_naming_the_field(
    shared_api: httpx.Client, body: dict[str, Any], named: str
) -> None:
    answer = shared_api.put("/links/routing", json=body)
    assert answer.status_code == 400, answer.text
    assert named in answer.json()["message"]
    assert shared_api.get("/links/routing").json()["mode"] == "shared"


# Each mode, through phones and a link.


def test_mode_links_sends_the_queue_through_the_link_and_phones_take_only_their_pinned(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    hand = HandPhone(live, alice)
    set_rule(api, mode="links")

    queued = send(api)
    pinned = send(api, deviceId=hand.id)
    assert hand.pull() == {pinned}  # not the queued one, though no link has taken it

    link_id = add_link(live, smsc, alice.login)
    assert delivered_by(live, api, queued) == link_id
    assert sender_of(live, pinned) == hand.id


def test_mode_phones_keeps_the_link_off_the_queue_until_the_failover_delay(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc, at: list[datetime]
) -> None:
    HandPhone(live, alice)  # online, but it does not pull
    link_id = add_link(live, smsc, alice.login)
    set_rule(api, mode="phones", failoverAfter=30)

    waiting = send(api)
    at[0] = CLOCK_START + timedelta(seconds=29)
    barrier(live, api, link_id)
    assert sender_of(live, waiting) is None  # 29 s: still the phones'

    at[0] = CLOCK_START + timedelta(seconds=30)
    assert delivered_by(live, api, waiting) == link_id
    fresh = send(api)  # a new message waits its own 30 s
    barrier(live, api, link_id)
    assert sender_of(live, fresh) is None


def test_a_scheduled_message_waits_the_failover_delay_from_its_time(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc, at: list[datetime]
) -> None:
    link_id = add_link(live, smsc, alice.login)
    set_rule(api, mode="phones", failoverAfter=30)
    later = CLOCK_START + timedelta(minutes=10)
    scheduled = send(api, scheduleAt=later.isoformat().replace("+00:00", "Z"))

    at[0] = later + timedelta(seconds=29)
    barrier(live, api, link_id)
    assert sender_of(live, scheduled) is None
    at[0] = later + timedelta(seconds=30)
    assert delivered_by(live, api, scheduled) == link_id


def test_mode_prefix_gives_the_link_a_message_only_when_every_recipient_matches(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    hand = HandPhone(live, alice)
    link_id = add_link(live, smsc, alice.login)
    set_rule(api, mode="prefix", prefixes=["+44", "+49"])

    other = send(api, US)
    mixed = send(api, UK, US)
    both = send(api, UK, DE)
    assert delivered_by(live, api, both) == link_id  # its claim ran after the other two
    assert sender_of(live, other) is None and sender_of(live, mixed) is None

    assert hand.pull() == {other, mixed}
    uk = send(api, UK)
    assert hand.pull() == {other, mixed}  # never one for the link
    assert delivered_by(live, api, uk) == link_id
    submitted = {s["destination"] for s in smsc.submits()}
    assert submitted == {UK[1:], DE[1:]}  # the link never sent to the US number


def test_mode_prefix_with_failover_hands_a_message_to_the_other_kind_after_the_delay(
    live: LiveServer, alice: Account, api: httpx.Client, at: list[datetime]
) -> None:
    """The account has no link bound: the link's share goes to the phones after 30 s."""
    hand = HandPhone(live, alice)
    set_rule(api, mode="prefix", prefixes=["+44"], failoverAfter=30)
    uk = send(api, UK)
    assert hand.pull() == set()
    at[0] = CLOCK_START + timedelta(seconds=30)
    assert hand.pull() == {uk}


def test_mode_links_with_failover_lets_phones_take_what_no_link_took(
    live: LiveServer, alice: Account, api: httpx.Client, at: list[datetime]
) -> None:
    hand = HandPhone(live, alice)
    set_rule(api, mode="links", failoverAfter=60)
    stuck = send(api)
    at[0] = CLOCK_START + timedelta(seconds=59)
    assert hand.pull() == set()
    at[0] = CLOCK_START + timedelta(seconds=60)
    assert hand.pull() == {stuck}


def test_mode_fallback_uses_the_link_only_while_no_phone_is_online(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc, at: list[datetime]
) -> None:
    """A simulated phone sends while it is connected; once it is gone longer than the
    online window, the link takes the queue."""
    link_id = add_link(live, smsc, alice.login)
    set_rule(api, mode="fallback")
    device = phone(live, alice)
    sent: list[str] = []

    async def online() -> None:
        await device.start()
        await eventually(lambda: _true(device.sse_opens > 0))
        apps = Api(live, alice)
        sent.append(await apps.send())
        await apps.reaches(sent[0], "Delivered")
        await device.stop()

    run(online)
    phone_id = device.credentials.id  # type: ignore[union-attr]
    assert delivered_by(live, api, sent[0]) == phone_id
    waiting = send(api)
    at[0] = CLOCK_START + timedelta(seconds=ONLINE - 1)  # heard from 59 s ago: online
    barrier(live, api, link_id)
    assert sender_of(live, waiting) is None

    at[0] = CLOCK_START + timedelta(seconds=ONLINE + 1)
    assert delivered_by(live, api, waiting) == link_id


def test_mode_fallback_with_no_phone_at_all_sends_through_the_link(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    link_id = add_link(live, smsc, alice.login)
    set_rule(api, mode="fallback")
    assert delivered_by(live, api, send(api)) == link_id


def test_the_rule_is_the_accounts_own(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    """Alice keeps her link off her queue; Bob, who set nothing, shares his."""
    bob = live.create_user("bob")
    alices_link = add_link(live, smsc, alice.login)
    bobs_link = add_link(live, smsc, bob.login)
    set_rule(api, mode="phones")

    with live.client(bob) as bobs_api:
        assert bobs_api.get("/links/routing").json()["mode"] == "shared"
        assert delivered_by(live, bobs_api, send(bobs_api)) == bobs_link
    waiting = send(api)
    barrier(live, api, alices_link)
    assert sender_of(live, waiting) is None
    hand = HandPhone(live, alice)
    assert hand.pull() == {waiting}


def test_in_mode_shared_a_phone_and_a_link_both_take_from_the_queue(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    hand = HandPhone(live, alice)
    first = send(api)
    assert hand.pull() == {first}
    link_id = add_link(live, smsc, alice.login)
    assert delivered_by(live, api, send(api)) == link_id


def test_the_worker_wakes_a_phone_once_the_failover_delay_gives_it_the_message(
    live: LiveServer, alice: Account, api: httpx.Client, at: list[datetime]
) -> None:
    """Mode links, no link: a simulated phone that pulls only when woken (or told to here)
    takes nothing, until the message has waited 30 s: then the worker wakes it."""
    set_rule(api, mode="links", failoverAfter=30)
    device = phone(live, alice, pull_interval=1e6)

    async def scenario() -> None:
        await device.start()
        await eventually(lambda: _true(device.sse_opens > 0))
        apps = Api(live, alice)
        message_id = await apps.send()
        await device.pull()
        assert device.messages == {}
        at[0] = CLOCK_START + timedelta(seconds=30)
        await apps.reaches(message_id, "Delivered")
        assert list(device.messages) == [message_id]
        await device.stop()

    run(scenario)


def test_a_phone_with_a_budget_claims_by_the_rule_too(tmp_path: Path) -> None:
    """A phone's claim within a budget (the server's default of 30 parts a minute) is
    another statement (routing/repository.py `claim`): it follows the rule as well."""
    settings = make_settings(tmp_path / "data", phone_parts_per_minute=30)
    with running(settings) as server:
        owner = server.create_user("owner")
        with server.client(owner) as client:
            hand = HandPhone(server, owner)
            set_rule(client, mode="prefix", prefixes=["+44"])
            us, uk = send(client, US), send(client, UK)
            assert hand.pull() == {us}
            set_rule(client, mode="links")
            later = send(client, US)
            assert hand.pull() == {us}
            set_rule(client, mode="phones")
            assert hand.pull() == {us, uk, later}


def test_a_message_pinned_to_a_bound_idle_link_goes_out_at_once(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    """Whatever the rule (here: phones only), a message pinned to the link is the link's;
    and a bound link that has nothing queued for it still takes it (not only when it binds
    again)."""
    link_id = add_link(live, smsc, alice.login)
    set_rule(api, mode="phones")
    assert delivered_by(live, api, send(api, UK, deviceId=link_id)) == link_id
    assert delivered_by(live, api, send(api, US, deviceId=link_id)) == link_id
