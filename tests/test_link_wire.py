"""What a link puts on the wire beyond its messages (docs/links.md), checked at the npm `smpp`
simulator (tests/fakes/smsc-sim.js) through a real running smsgw: its bind's system_type
and its submit_sm's source TON and NPI as the link was added with; its answers to the
SMSC's enquire_link and its own enquire_link (smpp34's, every 30 s); its throughput limit
(submit_sm a second at most, as carriers contract); and ESME_RMSGQFUL (the carrier's queue
full) slowing the link as ESME_RTHROTTLED does, the message still sent.

The SMSC's side does not differ between the engines: each runs on one."""

from __future__ import annotations

import httpx
import pytest
import smpp34

from tests.conftest import Account, LiveServer
from tests.fakes.smsc import Smsc, wait_until
from tests.test_links import add_link, bound, reaches, send

pytestmark = pytest.mark.one_engine("the SMSC's side of a link is the same on both")  # conftest.py


def test_the_bind_carries_the_links_system_type_and_submits_its_source_ton_and_npi(
    server: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    link_id = add_link(
        server, smsc, alice.login, "--system-type", "SMSGWTEST", "--source-ton", "6",
        "--source-npi", "9",
    )  # fmt: skip
    bound(server, link_id)
    reaches(api, send(api, "from a private plan"), "Delivered")

    assert smsc.binds()["system_types"] == ["SMSGWTEST"]
    [submit] = smsc.submits()
    assert (submit["source"], submit["source_ton"], submit["source_npi"]) == ("SMSGW", 6, 9)


def test_the_smscs_enquire_link_is_answered_and_the_link_sends_its_own(
    server: LiveServer, alice: Account, smsc: Smsc
) -> None:
    """smpp34 answers an SMSC's enquire_link, and sends one of its own every 30 s (not
    configurable: docs/links.md, "Which SMPP library")."""
    bound(server, add_link(server, smsc, alice.login))

    assert smsc.enquire() == 1
    wait_until(lambda: smsc.binds()["enquire_answers"] == 1, what="the enquire_link answered")
    wait_until(lambda: smsc.binds()["enquires"] >= 1, within=90, what="an enquire_link sent")
    assert smsc.binds()["bound"] == 1  # the session goes on


def test_a_links_throughput_limit_spaces_its_submits(
    server: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    """At 5 a second (bursts of at most 1), 12 submit_sm take at least 11 / 5 = 2.2 s
    however many the window allows: the simulator's clock from the first to the last."""
    sent = [send(api, f"limited {n}") for n in range(12)]
    bound(server, add_link(server, smsc, alice.login, "--throughput", "5", "--window", "10"))
    for message_id in sent:
        reaches(api, message_id, "Delivered")

    at = sorted(s["at"] for s in smsc.submits())
    assert len(at) == 12
    assert at[-1] - at[0] >= 2000  # ms (2,200 less what the first's delivery took)


def test_a_full_queue_at_the_carrier_slows_the_link_and_the_message_still_goes(
    server: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    """ESME_RMSGQFUL is a busy answer, as ESME_RTHROTTLED (links/session.py BUSY): the part
    is offered again after a pause, not failed."""
    bound(server, add_link(server, smsc, alice.login))
    smsc.throttle(2, status=smpp34.ESME_RMSGQFUL)

    reaches(api, send(api, "when there is room"), "Delivered")

    submits = smsc.submits()
    assert [s["answered"] for s in submits[:2]] == ["throttled", "throttled"]
    assert len(submits) == 3 and submits[2]["answered"] not in ("throttled", "nack", "held")
    assert submits[2]["at"] - submits[1]["at"] >= 450  # the pause (0.5 s), less clock grain
