"""Carrier links against a second, independent SMSC: PyPI `smpp34`'s own server
(tests/fakes/smpp34_smsc.py), beside the npm `smpp` simulator of tests/test_links.py (issue
19, requirement 5). Through a real running smsgw: a message sent and its receipt making it
Delivered (or Failed), a long UCS-2 text in three parts whose receipts are joined, an MO
deliver_sm into the inbox and the webhooks, a busy carrier (ESME_RTHROTTLED, ESME_RMSGQFUL)
slowing the link, a part it refuses failing its recipient, and an unbind from its side
after which the link binds again. smpp34's server accepts any password, so the refused
bind is tested against the npm simulator only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import smpp34

from tests.conftest import Account, LiveServer, database_rows, running
from tests.fakes.receiver import Receiver
from tests.fakes.smpp34_smsc import Smpp34Smsc, Submitted
from tests.fakes.smsc import wait_until
from tests.test_links import add_link, bound, hook, reaches, send
from tests.webhook_support import hub_settings

NUMBER = "+12025550100"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with running(hub_settings(tmp_path / "data", link_connect_timeout_seconds=2)) as server:
        yield server


@pytest.fixture
def alice(live: LiveServer) -> Account:
    return live.create_user("alice")


@pytest.fixture
def api(live: LiveServer, alice: Account) -> Iterator[httpx.Client]:
    with live.client(alice) as client:
        yield client


def serving_smsc(receipt_tlvs: bool) -> Iterator[Smpp34Smsc]:
    started = Smpp34Smsc(receipt_tlvs=receipt_tlvs).start()
    yield started
    started.stop()


@pytest.fixture
def smsc() -> Iterator[Smpp34Smsc]:
    """Receipts with the TLVs receipted_message_id and message_state."""
    yield from serving_smsc(receipt_tlvs=True)


def in_part_order(submits: list[Submitted]) -> list[Submitted]:
    """The submits of one long message by their UDH sequence number (the header's sixth
    octet). The link sends a message's parts side by side in its window, a task each, and
    nothing keeps them in order on the wire (a loaded run once saw part 2 go first); the
    phone joins them by that number, in whatever order they come."""
    return sorted(submits, key=lambda submit: submit.short_message[5])


@pytest.fixture
def text_receipts() -> Iterator[Smpp34Smsc]:
    """Receipts that say the part and its fate in their text only (id:... stat:...)."""
    yield from serving_smsc(receipt_tlvs=False)


def test_a_message_sent_through_smpp34s_smsc_is_delivered_by_its_receipt(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smpp34Smsc, receiver: Receiver
) -> None:
    hook(api, receiver, "sms:sent", "sms:delivered")
    link_id = add_link(live, smsc, alice.login)
    bound(live, link_id)

    message_id = send(api, "Hello via smpp34 {10€}")
    done = reaches(api, message_id, "Delivered")

    assert done["deviceId"] == link_id
    assert done["recipients"] == [{"phoneNumber": NUMBER, "state": "Delivered", "error": None}]
    [submit] = smsc.submitted
    assert (submit.destination, submit.source) == (NUMBER.removeprefix("+"), "SMSGW")
    assert (submit.data_coding, submit.esm_class, submit.registered_delivery) == (0, 0, 1)
    # GSM 03.38, one septet an octet: { } and the euro sign from the extension table (ESC)
    assert submit.short_message == b"Hello via smpp34 \x1b(10\x1be\x1b)"
    wait_until(lambda: len(receiver.delivered()) == 2, what="two webhooks")
    events = {r.json()["event"] for r in receiver.delivered()}
    assert events == {"sms:sent", "sms:delivered"}
    [part] = database_rows(
        live.settings, "SELECT smsc_id, outcome FROM link_parts WHERE device_id = ?", [link_id]
    )
    assert part == (submit.message_id, "delivered")


def test_an_undeliverable_receipt_from_smpp34s_smsc_fails_the_recipient(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smpp34Smsc
) -> None:
    bound(live, add_link(live, smsc, alice.login))

    failed = reaches(api, send(api, "to nowhere", number="+12025550000"), "Failed")

    [recipient] = failed["recipients"]
    assert recipient["error"] == "carrier receipt: stat:UNDELIV err:001"


def test_a_long_ucs2_text_goes_in_three_parts_and_their_text_receipts_are_joined(
    live: LiveServer, alice: Account, api: httpx.Client, text_receipts: Smpp34Smsc
) -> None:
    smsc = text_receipts
    link_id = add_link(live, smsc, alice.login)
    bound(live, link_id)
    text = "Grüße aus Köln, 你好世界! " * 7 + "Ende"  # 158 characters: 3 UCS-2 parts

    message_id = send(api, text)
    reaches(api, message_id, "Delivered")

    submits = in_part_order(smsc.submitted)
    assert len(submits) == 3
    assert {(s.data_coding, s.esm_class) for s in submits} == {(8, 0x40)}
    headers = [s.short_message[:6] for s in submits]
    # UDH: length 5, IEI 00 (8-bit reference), 3 octets: one reference, 3 parts, 1 to 3
    assert [h[:3] for h in headers] == [b"\x05\x00\x03"] * 3
    assert len({h[3] for h in headers}) == 1
    assert [(h[4], h[5]) for h in headers] == [(3, 1), (3, 2), (3, 3)]
    bodies = [s.short_message[6:].decode("utf-16-be") for s in submits]
    assert [len(b) for b in bodies] == [67, 67, 24]
    assert "".join(bodies) == text
    assert smsc.receipts_sent == 3
    outcomes = database_rows(
        live.settings,
        "SELECT smsc_id, outcome FROM link_parts WHERE device_id = ? ORDER BY part",
        [link_id],
    )
    assert outcomes == [(s.message_id, "delivered") for s in submits]


def test_an_mo_from_smpp34s_smsc_lands_in_the_inbox_and_the_webhooks(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smpp34Smsc, receiver: Receiver
) -> None:
    hook(api, receiver, "sms:received")
    link_id = add_link(live, smsc, alice.login)
    bound(live, link_id)

    assert smsc.mo("4915100001", "Grüße, 你好".encode("utf-16-be"), data_coding=8) == 1

    wait_until(lambda: len(receiver.delivered()) == 1, what="the sms:received webhook")
    [envelope] = [r.json() for r in receiver.delivered()]
    assert (envelope["event"], envelope["deviceId"]) == ("sms:received", link_id)
    assert envelope["payload"]["message"] == "Grüße, 你好"
    assert envelope["payload"]["phoneNumber"] == "+4915100001"
    inbox = api.get("/inbox").json()
    assert [(m["message"], m["sender"]) for m in inbox] == [("Grüße, 你好", "+4915100001")]


def big(n: int) -> int:
    """The n-th id as a number with hex letters in it (700001 is AAE61)."""
    return 700_000 + n


@pytest.mark.parametrize(
    ("answer_id", "receipt_id"),
    [
        (lambda n: f"{big(n):X}", lambda n: f"{big(n):010d}"),  # hex, then decimal (Kannel)
        (lambda n: f"{big(n)}", lambda n: f"{big(n):X}"),  # decimal, then hex
        (lambda n: f"{big(n):x}", lambda n: f"{big(n):X}"),  # the letters' case
        (lambda n: f"{big(n)}", lambda n: f"{big(n):010d}"),  # zeros added (Appendix B)
        (lambda n: f"{big(n):08X}", lambda n: f"{big(n):X}"),  # zeros left out
    ],
    ids=["hex-decimal", "decimal-hex", "case", "zeros-added", "zeros-left-out"],
)
def test_a_receipt_that_spells_its_parts_id_otherwise_delivers_it(
    live: LiveServer,
    alice: Account,
    api: httpx.Client,
    answer_id: Callable[[int], str],
    receipt_id: Callable[[int], str],
) -> None:
    """Many SMSCs write the id in a text receipt (SMPP 3.3 style, no TLVs) otherwise than in
    the submit_sm_resp: a receipt whose id no part of the link has as spelled names the
    part that awaits a receipt under another spelling of it (links/repository.py
    `spellings`). Three parts, three receipts, each finding its own."""
    smsc = Smpp34Smsc(receipt_tlvs=False, answer_id=answer_id, receipt_id=receipt_id).start()
    try:
        link_id = add_link(live, smsc, alice.login)
        bound(live, link_id)

        reaches(api, send(api, "Grüße aus Köln, 你好世界! " * 7 + "Ende"), "Delivered")

        assert smsc.receipts_sent == 3
        outcomes = database_rows(
            live.settings,
            "SELECT smsc_id, outcome FROM link_parts WHERE device_id = ? ORDER BY part",
            [link_id],
        )
        assert outcomes == [(s.message_id, "delivered") for s in in_part_order(smsc.submitted)]
        assert all(answer_id(n) != receipt_id(n) for n in range(1, 4))
    finally:
        smsc.stop()


def test_a_busy_smpp34_smsc_slows_the_link_and_the_message_still_goes(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smpp34Smsc
) -> None:
    """ESME_RTHROTTLED, then ESME_RMSGQFUL: busy answers, the part offered again after each
    pause (docs/links.md, "Throttling"), never failed."""
    bound(live, add_link(live, smsc, alice.login))
    smsc.refuse(smpp34.ESME_RTHROTTLED, smpp34.ESME_RMSGQFUL)

    reaches(api, send(api, "once there is room"), "Delivered")

    destination = NUMBER.removeprefix("+")
    assert smsc.refused == [
        (destination, smpp34.ESME_RTHROTTLED),
        (destination, smpp34.ESME_RMSGQFUL),
    ]
    assert [s.destination for s in smsc.submitted] == [destination]


def test_a_part_smpp34s_smsc_refuses_fails_its_recipient_with_the_code_named(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smpp34Smsc
) -> None:
    bound(live, add_link(live, smsc, alice.login))
    smsc.refuse(smpp34.ESME_RINVDSTADR)

    failed = reaches(api, send(api, "to a number the carrier refuses"), "Failed")

    [recipient] = failed["recipients"]
    assert recipient["error"] == "the SMSC refused submit_sm: ESME_RINVDSTADR (0x0000000B)"
    assert smsc.submitted == []  # refused, and not offered again


def test_after_smpp34s_smsc_unbinds_the_link_binds_again_and_sends_on(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smpp34Smsc
) -> None:
    """The carrier ends the session itself (its maintenance, say): the link binds again
    (reconnect with backoff) and what is sent next goes through the new session."""
    link_id = add_link(live, smsc, alice.login)
    bound(live, link_id)

    assert smsc.unbind() == 1
    wait_until(lambda: smsc.binds == 2 and smsc.bound() == 1, what="the link bound again")
    bound(live, link_id)
    reaches(api, send(api, "after the carrier's unbind"), "Delivered")

    assert [s.destination for s in smsc.submitted] == [NUMBER.removeprefix("+")]
