"""A carrier link for all accounts (docs/links.md "A link for all accounts"), through a real
running smsgw against the npm `smpp` simulator (tests/fakes/smsc-sim.js): the operator adds
it with `smsgw links add smpp --all-accounts` for an account that holds it ("ops"); it sends
every account's queued messages as that account's own (states, webhooks, listings), each
account under its own routing rule, in turns when several have work; an MO goes to the
account that last wrote to its sender, else to the holder; the API adds no such link."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsgw.config import Settings
from tests.conftest import Account, LiveServer
from tests.fakes.receiver import Receiver
from tests.fakes.smsc import Smsc, wait_until
from tests.test_link_routing import HandPhone, set_rule
from tests.test_links import add_link, bound, cli, hook, listed, message, reaches, send
from tests.test_web_links import PAGE, row_of
from tests.web_support import Dashboard
from tests.webhook_support import hub_settings

ALICES, BOBS, STRANGER = "+4915112345601", "+4915112345602", "+4915112345609"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Binds give up after 2 s, webhooks retry fast; a claim takes 4 messages at most, so
    that taking turns between accounts shows (conftest's `server`, `alice`, `api`)."""
    return hub_settings(tmp_path / "data", link_connect_timeout_seconds=2, claim_cap=4)


@pytest.fixture
def ops(server: LiveServer) -> Account:
    """The operator's account, which holds the link for all accounts."""
    return server.create_user("ops")


@pytest.fixture
def bob(server: LiveServer) -> Account:
    return server.create_user("bob")


@pytest.fixture
def bobs_api(server: LiveServer, bob: Account) -> Iterator[httpx.Client]:
    with server.client(bob) as client:
        yield client


def shared_link(server: LiveServer, smsc: Smsc, ops: Account) -> str:
    link_id = add_link(server, smsc, ops.login, "--all-accounts")
    bound(server, link_id)
    return link_id


def texts(smsc: Smsc) -> list[str]:
    return [str(submit["text"]) for submit in smsc.submits()]


def test_it_sends_each_accounts_messages_as_that_accounts_own(
    server: LiveServer, alice: Account, api: httpx.Client, bobs_api: httpx.Client,
    ops: Account, smsc: Smsc, receiver: Receiver,
) -> None:  # fmt: skip
    hook(api, receiver, "sms:sent", "sms:delivered")
    link_id = shared_link(server, smsc, ops)

    # the same id in two accounts: each report finds its own account's message
    alices = send(api, "for alice's customer", ALICES, id="order-1")
    bobs = send(bobs_api, "for bob's customer", BOBS, id="order-1")
    assert alices == bobs == "order-1"
    for client, number in ((api, ALICES), (bobs_api, BOBS)):
        done = reaches(client, "order-1", "Delivered")
        assert done["deviceId"] == link_id
        assert done["recipients"] == [{"phoneNumber": number, "state": "Delivered", "error": None}]
    assert sorted(texts(smsc)) == ["for alice's customer", "for bob's customer"]

    # alice's webhooks carry alice's message only, once per event
    wait_until(lambda: len(receiver.delivered()) == 2, what="alice's sms:sent and sms:delivered")
    events = sorted((r.json()["event"], r.json()["payload"]["phoneNumber"])
                    for r in receiver.delivered())  # fmt: skip
    assert events == [("sms:delivered", ALICES), ("sms:sent", ALICES)]
    assert [m["id"] for m in api.get("/messages").json()] == ["order-1"]

    # the holder sees the link for all accounts; the others do not list it
    assert listed(server, link_id)["allAccounts"] is True
    assert "ops (all accounts)" in cli(server, "links", "list")
    with server.client(ops) as ops_api:
        [shown] = ops_api.get("/links").json()
    assert (shown["id"], shown["allAccounts"], shown["state"]) == (link_id, True, "bound")
    assert api.get("/links").json() == [] == bobs_api.get("/links").json()


def test_each_account_keeps_its_own_routing_rule(
    server: LiveServer, alice: Account, api: httpx.Client, bob: Account,
    bobs_api: httpx.Client, ops: Account, smsc: Smsc,
) -> None:  # fmt: skip
    """Bob keeps links off his queue: the link passes over his message, his phone gets it."""
    set_rule(bobs_api, mode="phones")
    link_id = shared_link(server, smsc, ops)

    waiting = send(bobs_api, "bob's, for his phones", BOBS)
    later = send(api, "alice's, sent after it", ALICES)
    # the claim that took alice's later message looked at bob's queue too (one unit)
    assert reaches(api, later, "Delivered")["deviceId"] == link_id
    assert message(bobs_api, waiting)["state"] == "Pending"
    assert HandPhone(server, bob).pull() == {waiting}
    assert texts(smsc) == ["alice's, sent after it"]


def test_accounts_with_work_take_turns(
    server: LiveServer, alice: Account, api: httpx.Client, bobs_api: httpx.Client,
    ops: Account, smsc: Smsc,
) -> None:  # fmt: skip
    """Alice queues 12 messages before Bob's 2: the link's first claim (4 at most) takes
    two of each, so Bob's go out among the first four rather than after Alice's twelve."""
    alices = [send(api, f"alice {n}", ALICES) for n in range(12)]
    bobs = [send(bobs_api, f"bob {n}", BOBS) for n in range(2)]
    shared_link(server, smsc, ops)

    for message_id in alices:
        reaches(api, message_id, "Delivered")
    for message_id in bobs:
        reaches(bobs_api, message_id, "Delivered")
    sent = texts(smsc)
    assert sorted(sent[:4]) == ["alice 0", "alice 1", "bob 0", "bob 1"]
    assert sorted(sent) == sorted([f"alice {n}" for n in range(12)] + ["bob 0", "bob 1"])


def inbox(client: httpx.Client) -> list[tuple[str, str]]:
    return [(m["sender"], m["message"]) for m in client.get("/inbox").json()]


def test_an_sms_goes_to_the_account_that_last_wrote_to_its_sender(
    server: LiveServer, alice: Account, api: httpx.Client, bobs_api: httpx.Client,
    ops: Account, smsc: Smsc,
) -> None:  # fmt: skip
    shared_link(server, smsc, ops)
    reaches(api, send(api, "alice writes", ALICES), "Delivered")
    reaches(bobs_api, send(bobs_api, "bob writes", BOBS), "Delivered")

    assert smsc.mo(ALICES.removeprefix("+"), "reply to alice") == 1
    assert smsc.mo(BOBS.removeprefix("+"), "reply to bob") == 1
    assert smsc.mo(STRANGER.removeprefix("+"), "nobody wrote to me") == 1
    with server.client(ops) as ops_api:
        wait_until(lambda: len(inbox(ops_api)) == 1, what="the stranger's SMS in ops' inbox")
        assert inbox(ops_api) == [(STRANGER, "nobody wrote to me")]
    wait_until(lambda: len(inbox(api)) == 1 and len(inbox(bobs_api)) == 1, what="the replies")
    assert inbox(api) == [(ALICES, "reply to alice")]
    assert inbox(bobs_api) == [(BOBS, "reply to bob")]

    # bob now writes to alice's customer too: the next reply is his
    reaches(bobs_api, send(bobs_api, "bob writes too", ALICES), "Delivered")
    assert smsc.mo(ALICES.removeprefix("+"), "reply to bob now") == 1
    wait_until(lambda: len(inbox(bobs_api)) == 2, what="the reply in bob's inbox")
    assert (ALICES, "reply to bob now") in inbox(bobs_api)
    assert inbox(api) == [(ALICES, "reply to alice")]


def test_the_api_adds_no_link_for_all_accounts(
    server: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    body: dict[str, Any] = {
        "host": "127.0.0.1", "port": smsc.port, "systemId": "alice01", "password": "pw",
        "allAccounts": True,
    }  # fmt: skip
    refused = api.post("/links", json=body)
    assert refused.status_code == 400, refused.text
    assert "allAccounts" in refused.text
    assert "only the operator adds a link for all accounts" in refused.text
    assert api.get("/links").json() == []
    added = api.post("/links", json=body | {"allAccounts": False})
    assert added.status_code == 201, added.text
    assert added.json()["allAccounts"] is False


def test_the_holders_dashboard_marks_the_link_for_all_accounts(
    server: LiveServer, ops: Account, smsc: Smsc
) -> None:
    link_id = shared_link(server, smsc, ops)
    dashboard = Dashboard(server)
    try:
        assert dashboard.sign_in(ops).status_code == 303
        row = row_of(dashboard.http.get(PAGE).text, link_id)
    finally:
        dashboard.close()
    assert "SMPP all accounts" in row


def test_the_holder_is_not_deleted_while_it_holds_the_link(
    server: LiveServer, alice: Account, api: httpx.Client, ops: Account, smsc: Smsc
) -> None:
    """Its account's deletion would take the link, and with it the hold on other accounts'
    messages: refused, naming the link; once the link is deleted, the account goes."""
    link_id = shared_link(server, smsc, ops)
    refused = cli(server, "users", "delete", "ops", "--yes", code=1)
    assert f"ops holds the link for all accounts {link_id}" in refused
    assert f"smsgw links delete {link_id}" in refused
    assert listed(server, link_id)["state"] == "bound"
    with server.client(ops) as ops_api:
        assert ops_api.get("/links").status_code == 200  # still signed in, still there

    cli(server, "links", "delete", link_id, "--yes")
    assert "deleted ops" in cli(server, "users", "delete", "ops", "--yes")
