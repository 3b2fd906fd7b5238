"""End to end through Jasmin 0.11.0 (issue 19, requirement 5): a carrier link of a real running
smsgw binds to Jasmin's SMPP server; Jasmin routes each submit_sm to the npm `smpp`
simulator (tests/fakes/smsc-sim.js) through its own SMPP client connector, answers smsgw
with message ids of its own, and turns the simulator's receipts into receipts of its own
naming those ids; the simulator's MO messages come back through a Jasmin MO route to the
link's session. Redis, RabbitMQ and jasmind (bench/jasmin.py: the venv .venv-jasmin and the
apt packages that `make test` installs) start once for the module, with the simulator and
the server, and are stopped after it, whatever happened.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from bench.jasmin import PASSWORD, USER, Jasmin, JasminError, default_venv

from tests.conftest import LiveServer, database_rows, running
from tests.fakes import smsc as simulator
from tests.fakes.smsc import Smsc, wait_until
from tests.test_links import bound, message, send
from tests.webhook_support import hub_settings

pytestmark = pytest.mark.one_engine("one chain of servers for the module, on SQLite")  # conftest

#: Jasmin's chain is slower than a direct link: RabbitMQ between its SMPP server and its
#: connector, and a receipt goes through the simulator, the connector, RabbitMQ and Redis.
WITHIN = 60.0


@dataclass
class Chain:
    server: LiveServer
    api: httpx.Client
    smsc: Smsc
    jasmin: Jasmin
    link_id: str
    #: the ports Jasmin was given for its SMPP server and for Redis, taken by the test
    #: before Jasmin started (as another test's server or client may take them)
    squatted: dict[str, int]


def squat(jasmin: Jasmin, started: ExitStack) -> dict[str, int]:
    """Take two of the ports Jasmin picked, until the module ends: its SMPP server's with a
    listening socket (what broke the module once: jasmind went on without its SMPP server,
    and the link was refused), Redis's with a connected client socket (no listener: the
    service says the port is in use)."""
    squatter = started.enter_context(socket.create_server(("127.0.0.1", jasmin.port["smpp"])))
    client = started.enter_context(socket.socket())
    client.bind(("127.0.0.1", jasmin.port["redis"]))
    client.connect(squatter.getsockname())
    return {"smpp": jasmin.port["smpp"], "redis": jasmin.port["redis"]}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """The simulator, Jasmin bound to it, and a server whose account alice has one link,
    bound to Jasmin's SMPP server as Jasmin's user."""
    scratch = tmp_path_factory.mktemp("jasmin")
    with ExitStack() as started:
        smsc = Smsc().start()
        started.callback(smsc.stop)
        try:
            jasmin = Jasmin(default_venv(), scratch)
            started.callback(jasmin.stop)
            squatted = squat(jasmin, started)
            jasmin.start()
            binds = smsc.binds()["ok"]
            jasmin.provision(smsc.port, simulator.USER, simulator.PASSWORD, 100, mo_to_user=True)
        except JasminError as error:
            pytest.fail(f"Jasmin did not start (logs in {scratch}): {error}")
        wait_until(lambda: smsc.binds()["ok"] > binds, WITHIN, "Jasmin's connector bound")
        server = started.enter_context(running(hub_settings(scratch / "data")))
        api = started.enter_context(server.client(server.create_user("alice")))
        answer = api.post("/links", json={
            "name": "Through Jasmin", "host": "127.0.0.1", "port": jasmin.port["smpp"],
            "systemId": USER, "password": PASSWORD, "source": "SMSGW", "throughput": 100,
        })  # fmt: skip
        assert answer.status_code == 201, answer.text
        link_id = answer.json()["id"]
        bound(server, link_id)
        yield Chain(server, api, smsc, jasmin, link_id, squatted)


def test_jasmin_starts_its_services_again_on_fresh_ports_when_theirs_were_taken(
    chain: Chain,
) -> None:
    """The link bound (the fixture) to Jasmin's SMPP server on a port of its own, not to the
    socket holding the port Jasmin was first given; Redis and jasmind were each started again,
    the logs of their first tries kept, and jasmind's error named the squatter. (A service may
    have been started again once more, when another test's server took one of its ports
    meanwhile: that is what the restarts are for, and the error says which process held it.)"""
    restarted: dict[str, list[str]] = {}
    for taken in chain.jasmin.taken:
        restarted.setdefault(str(taken).split(":", 1)[0], []).append(str(taken))
    assert "Redis" in restarted and "jasmind" in restarted, restarted
    for name, port in chain.squatted.items():
        assert chain.jasmin.port[name] != port
    squatter = f"another process listens on {chain.squatted['smpp']}: pid {os.getpid()} "
    assert any(squatter in said for said in restarted["jasmind"]), restarted["jasmind"]
    # jasmind's first try ended as soon as the squatter was seen listening (its log kept,
    # perhaps empty); Redis's port had no listener to see: its log said the port was in use
    assert (chain.jasmin.scratch / "jasmind.1.out").exists()
    assert "Address already in use" in (chain.jasmin.scratch / "redis.1.out").read_text()


def reaches(chain: Chain, message_id: str, state: str) -> dict[str, Any]:
    wait_until(
        lambda: message(chain.api, message_id)["state"] == state, WITHIN, f"{message_id} {state}"
    )
    return message(chain.api, message_id)


def submits_to(chain: Chain, number: str) -> list[dict[str, Any]]:
    return [s for s in chain.smsc.submits() if s["destination"] == number.removeprefix("+")]


def parts(chain: Chain, message_id: str) -> list[tuple[str, str, str | None]]:
    """(Jasmin's id, outcome, error) of each part of the message, in order."""
    rows = database_rows(
        chain.server.settings,
        "SELECT smsc_id, outcome, error FROM link_parts WHERE message_id = "
        "(SELECT id FROM messages WHERE ext_id = ?) ORDER BY part",
        [message_id],
    )
    return [(row[0], row[1], row[2]) for row in rows]


def test_a_message_reaches_the_simulator_through_jasmin_and_its_receipt_delivers_it(
    chain: Chain,
) -> None:
    number = "+12025550100"
    message_id = send(chain.api, "Hello through Jasmin", number=number)
    done = reaches(chain, message_id, "Delivered")

    assert done["deviceId"] == chain.link_id
    assert done["recipients"] == [{"phoneNumber": number, "state": "Delivered", "error": None}]
    [submit] = submits_to(chain, number)
    assert (submit["text"], submit["source"], submit["data_coding"]) == (
        "Hello through Jasmin", "SMSGW", 0,
    )  # fmt: skip
    assert submit["registered_delivery"] == 1
    # smsgw knows the part by Jasmin's id, not the simulator's: Jasmin's receipt matched it
    [(jasmin_id, outcome, error)] = parts(chain, message_id)
    assert (outcome, error) == ("delivered", None)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", jasmin_id)
    assert jasmin_id != submit["answered"]  # the simulator's: 8 hex digits


def test_an_undeliverable_number_fails_with_the_carriers_error_through_jasmin(
    chain: Chain,
) -> None:
    number = "+12025550000"  # the simulator's receipt: stat:UNDELIV err:001
    failed = reaches(chain, send(chain.api, "to nowhere", number=number), "Failed")

    [recipient] = failed["recipients"]
    assert recipient["state"] == "Failed"
    assert recipient["error"] == "carrier receipt: stat:UNDELIV err:001"
    assert [s["text"] for s in submits_to(chain, number)] == ["to nowhere"]


def test_a_long_ucs2_text_goes_through_jasmin_in_three_parts_each_delivered(
    chain: Chain,
) -> None:
    number = "+12025550101"
    text = "Привет через Jasmin, длинное сообщение! " * 4 + "Конец"  # 165: 3 UCS-2 parts
    message_id = send(chain.api, text, number=number)
    reaches(chain, message_id, "Delivered")

    submits = submits_to(chain, number)
    assert len(submits) == 3
    assert {(s["data_coding"], s["esm_class"]) for s in submits} == {(8, 0x40)}
    # Jasmin does not keep the parts' order (each goes through RabbitMQ on its own): the
    # UDH numbers them, one reference, 3 parts, 1 to 3
    headers = {bytes.fromhex(s["udh"][0]): s for s in submits}
    assert len({h[2] for h in headers}) == 1
    assert sorted((h[3], h[4]) for h in headers) == [(3, 1), (3, 2), (3, 3)]
    assert "".join(headers[h]["text"] for h in sorted(headers, key=lambda h: h[4])) == text
    found = parts(chain, message_id)
    assert [(outcome, error) for _, outcome, error in found] == [("delivered", None)] * 3
    ours = {jasmin_id for jasmin_id, _, _ in found}
    assert len(ours) == 3 and not ours & {s["answered"] for s in submits}


def test_an_sms_from_the_simulator_comes_through_jasmin_to_the_inbox(chain: Chain) -> None:
    assert chain.smsc.mo("4915100001", "hello through Jasmin") == 1  # Jasmin's connector

    def arrived() -> bool:
        return any(m["message"] == "hello through Jasmin" for m in chain.api.get("/inbox").json())

    wait_until(arrived, WITHIN, "the MO in the inbox")
    [received] = chain.api.get("/inbox").json()
    assert (received["message"], received["sender"]) == ("hello through Jasmin", "+4915100001")
    assert received["deviceId"] == chain.link_id
