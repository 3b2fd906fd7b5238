"""A carrier link's bind mode (links/session.py, docs/links.md "Bind mode"), through a real
running smsgw against the npm `smpp` simulator (tests/fakes/smsc-sim.js), which sends
deliver_sm only to sessions bound transceiver or receiver: a `tx_rx` link binds a
transmitter and a receiver, submits on the one and takes receipts and MO on the other; the
receiver lost takes the link down and it binds both again, sending nothing twice; a refused
bind says which session; both unbind when the server stops; the dashboard adds one and says
so. (A bad mode refused: tests/test_links_api.py, tests/test_web_links.py.)"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsgw.config import Settings
from tests.conftest import Account, LiveServer, running
from tests.fakes.receiver import Receiver
from tests.fakes.smsc import Smsc, wait_until
from tests.test_links import (
    NUMBER,
    add_link,
    bound,
    cli,
    hook,
    listed,
    message,
    reaches,
    send,
)
from tests.test_web_links import PAGE, row_of
from tests.test_web_links import add as add_on_the_page
from tests.web_support import Dashboard
from tests.webhook_support import hub_settings

BOTH = ["receiver", "transmitter"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """As tests/test_links.py's server: binds give up after 2 s, webhooks retry fast
    (tests/conftest.py's `server`, `alice` and `api` take these settings)."""
    return hub_settings(tmp_path / "data", link_connect_timeout_seconds=2)


def delivers(smsc: Smsc) -> dict[str, int]:
    """The deliver_sm the simulator sent, by the kind of session that got them."""
    found: dict[str, int] = smsc.binds()["delivers"]
    return found


def test_a_tx_rx_link_submits_on_its_transmitter_and_receives_on_its_receiver(
    server: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc, receiver: Receiver
) -> None:
    hook(api, receiver, "sms:delivered", "sms:received")
    link_id = add_link(server, smsc, alice.login, "--bind-mode", "tx_rx")
    bound(server, link_id)

    # two binds (more when a busy machine let one outlast the 2 s connect timeout)
    wait_until(lambda: smsc.binds()["kinds"] == BOTH, what="a transmitter and a receiver")
    assert listed(server, link_id)["bindMode"] == "tx_rx"
    assert "tx_rx" in cli(server, "links", "list")  # the table has the column too
    [shown] = api.get("/links").json()
    assert (shown["id"], shown["bindMode"], shown["state"]) == (link_id, "tx_rx", "bound")
    assert api.get(f"/links/{link_id}").json()["bindMode"] == "tx_rx"

    message_id = send(api, "Hello over a transmitter")
    done = reaches(api, message_id, "Delivered")
    assert done["deviceId"] == link_id
    assert done["recipients"] == [{"phoneNumber": NUMBER, "state": "Delivered", "error": None}]
    assert smsc.mo("4915100001", "hello receiver") == 1  # the receiver only

    wait_until(lambda: len(receiver.delivered()) == 2, what="sms:delivered and sms:received")
    events = {r.json()["event"]: r.json() for r in receiver.delivered()}
    assert events["sms:delivered"]["payload"]["messageId"] == message_id
    assert events["sms:received"]["deviceId"] == link_id
    inbox = api.get("/inbox").json()
    assert [(m["message"], m["sender"]) for m in inbox] == [("hello receiver", "+4915100001")]
    [submit] = smsc.submits()
    assert submit["text"] == "Hello over a transmitter"
    # the receipt and the MO came on the receiver, nothing on the transmitter
    assert delivers(smsc) == {"transceiver": 0, "transmitter": 0, "receiver": 2}
    assert smsc.binds()["kinds"] == BOTH  # both sessions kept


def test_the_receiver_lost_takes_the_link_down_it_binds_again_and_sends_nothing_twice(
    server: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Window 3: of five messages, three submit_sm go out on the transmitter and wait for
    answers the carrier holds back; the receiver's connection drops. The link is down: it
    stops sending, unbinds the transmitter (the three may have reached the carrier: they
    fail saying so, never sent twice) and binds both again; the other two go then, and their
    receipts come on the new receiver."""
    caplog.set_level(logging.INFO, logger="smsgw.links")
    link_id = add_link(
        server, smsc, alice.login, "--bind-mode", "tx_rx", "--window", "3", "--throughput", "1000"
    )
    bound(server, link_id)
    smsc.hold(True)

    sent = [send(api, f"message {n}") for n in range(5)]
    wait_until(lambda: len(smsc.submits()) == 3, what="a full window")
    wait_until(lambda: all(message(api, m)["state"] == "Processed" for m in sent), what="claimed")

    smsc.hold(False)  # the three held stay unanswered
    assert smsc.drop("receiver") == 1
    states = {m: reaches(api, m, "Failed" if n < 3 else "Delivered") for n, m in enumerate(sent)}

    submits = smsc.submits()
    held = [s["text"] for s in submits if s["answered"] == "held"]
    assert sorted(held) == ["message 0", "message 1", "message 2"]
    assert sorted(s["text"] for s in submits) == [f"message {n}" for n in range(5)]  # once each
    for n in range(3):
        [recipient] = states[sent[n]]["recipients"]
        assert "no answer from the SMSC" in recipient["error"]
        assert "not resent" in recipient["error"]
    binds = smsc.binds()
    assert "transmitter" in binds["unbound"]  # the one left was unbound, not abandoned
    assert binds["ok"] >= 4  # both bound again (a slow bind may be tried once more)
    assert binds["delivers"]["transmitter"] == 0
    bound(server, link_id)
    wait_until(lambda: smsc.binds()["kinds"] == BOTH, what="a transmitter and a receiver")
    said = [r.getMessage() for r in caplog.records if r.name == "smsgw.links"]
    assert any(link_id in line and "the receiver session with" in line for line in said), said


def test_both_sessions_unbind_when_the_server_stops(tmp_path: Path, smsc: Smsc) -> None:
    with running(hub_settings(tmp_path / "data")) as server:
        owner = server.create_user("owner")
        bound(server, add_link(server, smsc, owner.login, "--bind-mode", "tx_rx"))
        assert smsc.binds()["kinds"] == BOTH
    binds = smsc.binds()
    assert sorted(binds["unbound"]) == BOTH
    assert binds["bound"] == 0


def test_a_refused_bind_says_which_session_and_why(
    server: LiveServer, alice: Account, smsc: Smsc
) -> None:
    link_id = add_link(server, smsc, alice.login, "--bind-mode", "tx_rx", password="wrong")
    seen: dict[str, Any] = {}

    def refused() -> bool:  # read once a round: the link may be binding again between reads
        seen.update(listed(server, link_id))
        return seen["state"] == "down" and "did not accept the bind" in (seen["detail"] or "")

    wait_until(refused, within=90, what="the refused bind in the list")
    assert seen["detail"].startswith("transmitter session: connected to 127.0.0.1:")
    assert "check system_id, password and system_type" in seen["detail"]
    assert smsc.binds()["refused"] >= 1
    assert smsc.binds()["bound"] == 0


def test_the_dashboard_adds_a_tx_rx_link_and_shows_its_bind_mode(
    server: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    dashboard = Dashboard(server)
    try:
        assert dashboard.sign_in(alice).status_code == 303
        form = dashboard.http.get(PAGE).text
        assert '<select id="l-bind-mode" name="bind_mode"' in form
        assert '<option value="transceiver" selected>' in form
        assert add_on_the_page(dashboard, smsc.port, bind_mode="tx_rx").status_code == 303
        [link] = api.get("/links").json()
        assert link["bindMode"] == "tx_rx"
        wait_until(lambda: api.get("/links").json()[0]["state"] == "bound", what="bound")
        assert smsc.binds()["kinds"] == BOTH
        row = row_of(dashboard.http.get(PAGE).text, link["id"])
    finally:
        dashboard.close()
    assert "binds transmitter + receiver" in row
