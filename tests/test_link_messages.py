"""What a link sends and receives beyond a plain text (docs/links.md), through a real
running smsgw against the npm `smpp` simulator (tests/fakes/smsc-sim.js).

Received: a long SMS a carrier delivers in parts ("Incoming SMS"): parts behind a
concatenation header (8- or 16-bit reference) or with the sar_* TLVs are kept until the last
one comes, in any order, then go to the inbox and the webhooks as one SMS; a part delivered
twice counts once; a long SMS in message_payload is one SMS; parts whose rest never comes go
as they are after 30 minutes (the clock moved, never waited for); and the header's parsing
itself (links/encoding.py `split_header`).

Sent ("Which messages a link sends"): a data message goes as one binary SMS (data_coding 4)
behind an application port header, as Android's sendDataMessage sends it; more data than one
SMS holds, an encrypted message, and a text of more parts than a header numbers (255), fail
at once with why, and so does a message whose encoding fails, alone: the rest of its claim
and the messages after it go out; a message's validUntil goes to the SMSC as the
submit_sm's validity_period."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsgw.config import Settings
from smsgw.links import service
from smsgw.links.encoding import MAX_DATA, UCS2, UDHI, Encoded, Segment, split_header
from smsgw.links.service import ENCRYPTED, MO_PARTS_WAIT, NOT_ENCODED, TOO_MUCH_DATA
from smsgw.messages.parts import GSM_MULTI
from tests.conftest import Account, LiveServer, database_rows
from tests.fakes.receiver import Receiver
from tests.fakes.smsc import Smsc, wait_until
from tests.test_links import NUMBER, add_link, bound, hook, reaches
from tests.webhook_support import hub_settings

SENDER = "4915112345601"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return hub_settings(tmp_path / "data", link_connect_timeout_seconds=2)


@pytest.fixture
def link(server: LiveServer, alice: Account, smsc: Smsc) -> str:
    link_id = add_link(server, smsc, alice.login)
    bound(server, link_id)
    return link_id


def udh8(reference: int, total: int, number: int) -> str:
    return bytes([0x05, 0x00, 0x03, reference, total, number]).hex()


def udh16(reference: int, total: int, number: int) -> str:
    return bytes([0x06, 0x08, 0x04, reference >> 8, reference & 0xFF, total, number]).hex()


def inbox(api: httpx.Client) -> list[str]:
    return [m["message"] for m in api.get("/inbox").json()]


def barrier(api: httpx.Client, smsc: Smsc, text: str) -> None:
    """An SMS in one part, sent after the others, is in the inbox. It does not tell that
    those before it were taken: the link's readers hand deliver_sm over in any order
    (links/session.READERS), so a test waits for what it expects of them too
    (`inbox_is`, `kept`)."""
    assert smsc.mo(SENDER, text) == 1
    wait_until(lambda: text in inbox(api), what=f"{text!r} in the inbox")


def inbox_is(api: httpx.Client, expected: list[str]) -> None:
    """Wait until the inbox holds the texts `expected`, in any order, and nothing else."""
    wait_until(lambda: sorted(inbox(api)) == sorted(expected), what=f"the inbox {expected}")


def kept(server: LiveServer) -> int:
    """Parts waiting for the rest of their SMS (not those of an SMS joined)."""
    query = "SELECT count(*) FROM link_mo_parts WHERE joined_at IS NULL"
    [(count,)] = database_rows(server.settings, query)
    return int(count)


def test_parts_behind_a_header_in_any_order_make_one_sms(
    server: LiveServer, api: httpx.Client, link: str, smsc: Smsc, receiver: Receiver
) -> None:
    hook(api, receiver, "sms:received")
    pieces = {1: "Hello, this is the first part ", 2: "and this the second ", 3: "and the end."}
    for number in (3, 1):
        body = udh8(7, 3, number) + pieces[number].encode().hex()
        assert smsc.mo(SENDER, hex=body, esm=str(UDHI)) == 1
    body = udh8(7, 3, 1) + pieces[1].encode().hex()  # the carrier delivers part 1 again
    assert smsc.mo(SENDER, hex=body, esm=str(UDHI)) == 1
    barrier(api, smsc, "in one part")
    wait_until(lambda: kept(server) == 2, what="parts 3 and 1 kept")
    assert inbox(api) == ["in one part"]  # two of three parts: kept, not in the inbox

    body = udh8(7, 3, 2) + pieces[2].encode().hex()
    assert smsc.mo(SENDER, hex=body, esm=str(UDHI)) == 1
    whole = pieces[1] + pieces[2] + pieces[3]
    wait_until(lambda: whole in inbox(api), what="the joined SMS")
    assert sorted(inbox(api)) == sorted(["in one part", whole])
    [message] = [m for m in api.get("/inbox").json() if m["message"] == whole]
    assert message["sender"] == "+" + SENDER
    assert message["deviceId"] == link
    assert kept(server) == 0
    wait_until(lambda: len(receiver.delivered()) == 2, what="two sms:received")
    texts = sorted(r.json()["payload"]["message"] for r in receiver.delivered())
    assert texts == sorted(["in one part", whole])


def test_ucs2_parts_with_a_16_bit_reference_join_without_losing_a_character(
    server: LiveServer, api: httpx.Client, link: str, smsc: Smsc
) -> None:
    text = "Привет, это длинное сообщение 👋 в двух частях"
    data = text.encode("utf-16-be")
    cut = data.index("👋".encode("utf-16-be")) + 2  # between the emoji's two halves
    for number, piece in ((2, data[cut:]), (1, data[:cut])):
        body = udh16(0x1234, 2, number) + piece.hex()
        assert smsc.mo(SENDER, hex=body, esm=str(UDHI), dc="8") == 1
    wait_until(lambda: inbox(api) == [text], what="the joined UCS-2 SMS")


def test_parts_with_sar_tlvs_and_a_long_sms_in_message_payload(
    server: LiveServer, api: httpx.Client, link: str, smsc: Smsc
) -> None:
    assert smsc.mo(SENDER, "second half.", sar="300,2,2") == 1
    assert smsc.mo(SENDER, "First half, ", sar="300,2,1") == 1
    wait_until(lambda: "First half, second half." in inbox(api), what="the SAR parts joined")
    long_text = "A long SMS in one deliver PDU, in its message payload TLV. " * 4
    assert smsc.mo(SENDER, payload=long_text.encode().hex()) == 1
    wait_until(lambda: long_text in inbox(api), what="the message_payload SMS")


def test_parts_whose_rest_never_comes_go_as_they_are_after_30_minutes(
    at: list[datetime], server: LiveServer, api: httpx.Client, link: str, smsc: Smsc
) -> None:
    body = udh8(9, 3, 1) + b"Only the first part came".hex()
    assert smsc.mo(SENDER, hex=body, esm=str(UDHI)) == 1
    barrier(api, smsc, "a later one")
    wait_until(lambda: kept(server) == 1, what="the first part kept")  # before the clock moves
    assert inbox(api) == ["a later one"]
    at[0] += MO_PARTS_WAIT + timedelta(seconds=1)
    wait_until(lambda: "Only the first part came" in inbox(api), what="the lone part")
    assert kept(server) == 0


@pytest.mark.parametrize(
    ("body", "esm_class", "expected"),
    [
        (bytes.fromhex("050003070302") + b"hi", UDHI, (b"hi", Segment(7, 3, 2))),
        (bytes.fromhex("0608041234020a") + b"x", UDHI, (b"x", None)),  # part 10 of 2
        (bytes.fromhex("060804123402"), UDHI, (b"", None)),  # the element cut short
        (bytes.fromhex("050003070101") + b"a", UDHI, (b"a", None)),  # one part of one
        # a port element (05) before the concatenation element
        (bytes.fromhex("0b0504162f162f00030c0201") + b"z", UDHI, (b"z", Segment(12, 2, 1))),
        # no UDHI: the body is the user data, whatever it looks like
        (bytes.fromhex("050003070302") + b"hi", 0, (bytes.fromhex("050003070302") + b"hi", None)),
        (b"plain", 0, (b"plain", None)),
    ],
)
def test_the_header_gives_the_user_data_and_the_part(
    body: bytes, esm_class: int, expected: tuple[bytes, Segment | None]
) -> None:
    assert split_header(body, esm_class) == expected


# Sent.


def send(api: httpx.Client, **body: Any) -> str:
    answer = api.post("/messages", json={"phoneNumbers": [NUMBER], **body})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def data_message(payload: bytes, port: int) -> dict[str, Any]:
    return {"dataMessage": {"data": base64.b64encode(payload).decode(), "port": port}}


def test_a_data_message_goes_as_one_binary_sms_behind_a_port_header(
    api: httpx.Client, link: str, smsc: Smsc
) -> None:
    payload = bytes([0x00, 0x01, 0xFE, 0xFF]) + b"wake up"
    done = reaches(api, send(api, **data_message(payload, 0x1F90)), "Delivered")
    assert done["deviceId"] == link
    [submit] = smsc.submits()
    assert (submit["data_coding"], submit["esm_class"]) == (4, 0x40)
    assert submit["udh"] == ["05041f900000"]  # ports: 8080 to, 0 from
    assert submit["text"] == payload.hex()


def test_the_most_data_one_sms_holds_goes_and_one_byte_more_fails(
    api: httpx.Client, link: str, smsc: Smsc
) -> None:
    fits = reaches(api, send(api, **data_message(bytes(MAX_DATA), 9200)), "Delivered")
    assert fits["deviceId"] == link
    too_much = reaches(api, send(api, **data_message(bytes(MAX_DATA + 1), 9200)), "Failed")
    assert too_much["recipients"][0]["error"] == TOO_MUCH_DATA
    assert len(smsc.submits()) == 1


def test_an_encrypted_message_fails_at_once_with_why(
    api: httpx.Client, link: str, smsc: Smsc
) -> None:
    body = {"textMessage": {"text": "c2VjcmV0"}, "isEncrypted": True}
    failed = reaches(api, send(api, **body), "Failed")
    assert failed["recipients"][0]["error"] == ENCRYPTED
    assert smsc.submits() == []


def text(words: str) -> dict[str, Any]:
    return {"textMessage": {"text": words}}


def test_a_text_of_more_than_255_parts_fails_and_the_link_goes_on(
    server: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    """A concatenation header numbers at most 255 parts: a longer text (the API takes 65,535
    characters) fails when claimed, and the message claimed with it and one sent after it
    go out (before, every claim of the link failed on it, and nothing went out again)."""
    too_long = send(api, **text("a" * GSM_MULTI * 256))  # 256 GSM 7-bit parts
    with_it = send(api, **text("claimed with it"))
    bound(server, add_link(server, smsc, alice.login))  # one claim takes both
    failed = reaches(api, too_long, "Failed")
    assert failed["recipients"][0]["error"] == (
        "too long for a carrier link: 256 parts, at most 255"
    )
    reaches(api, with_it, "Delivered")
    reaches(api, send(api, **text("sent after it")), "Delivered")
    assert [s["text"] for s in smsc.submits()] == ["claimed with it", "sent after it"]


@pytest.mark.parametrize(
    ("coding", "fits", "does_not"),
    [(3, "Price 10$ @home_ £5 é {x}", "Price 10 €"), (1, "Price 10$ @home_ {x} ~`", "café")],
)
def test_a_text_goes_in_the_8_bit_alphabet_of_the_link_when_it_fits_else_as_ucs2(
    server: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc,
    coding: int, fits: str, does_not: str,
) -> None:  # fmt: skip
    """A link with data_coding 3 (Latin-1) or 1 (IA5) sends a text whose every character is
    in that alphabet as its octets (before, as GSM septets labelled so: the SMSC read other
    characters), 134 of them per part of a longer one; any other text as UCS-2."""
    bound(server, add_link(server, smsc, alice.login, "--data-coding", str(coding)))
    longer = (fits * 7)[:141]  # one octet more than one SMS holds
    for words in (fits, does_not, longer):
        reaches(api, send(api, **text(words)), "Delivered")
    one, other, *parts = smsc.submits()
    assert (one["data_coding"], one["esm_class"]) == (coding, 0)
    assert bytes.fromhex(one["hex"]) == fits.encode("latin-1")  # (ASCII's octets too)
    assert (other["data_coding"], other["esm_class"]) == (UCS2, 0)
    assert bytes.fromhex(other["hex"]) == does_not.encode("utf-16-be")
    assert [(s["data_coding"], s["esm_class"]) for s in parts] == [(coding, UDHI)] * 2
    raw = [bytes.fromhex(s["hex"]) for s in parts]
    assert [r[4:6] for r in raw] == [bytes([2, 1]), bytes([2, 2])]  # (total, number)
    assert [r[6:] for r in raw] == [longer.encode("latin-1")[:134], longer.encode("latin-1")[134:]]
    if coding == 3:  # the simulator reads data_coding 3 as Latin-1 (1 as GSM 03.38)
        assert one["text"] == fits


def test_a_message_whose_encoding_fails_fails_alone(
    server: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Whatever goes wrong encoding one message (here a bug, made up) fails that message
    with why; the rest of its claim goes out."""
    encode = service.encode

    def failing(words: str, reference: int, data_coding: int) -> Encoded:
        if words == "cannot encode":
            raise RuntimeError("made up")
        return encode(words, reference, data_coding)

    monkeypatch.setattr(service, "encode", failing)
    broken = send(api, **text("cannot encode"))
    with_it = send(api, **text("claimed with it"))
    bound(server, add_link(server, smsc, alice.login))
    assert reaches(api, broken, "Failed")["recipients"][0]["error"] == NOT_ENCODED
    reaches(api, with_it, "Delivered")
    assert [s["text"] for s in smsc.submits()] == ["claimed with it"]


def test_valid_until_goes_to_the_smsc_as_the_validity_period(
    api: httpx.Client, link: str, smsc: Smsc
) -> None:
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    body = {"textMessage": {"text": "valid for two hours"}, "validUntil": until.isoformat()}
    reaches(api, send(api, **body), "Delivered")
    reaches(api, send(api, textMessage={"text": "no validUntil"}), "Delivered")
    validity = {submit["text"]: submit["validity"] for submit in smsc.submits()}
    assert validity["no validUntil"] is None  # the SMSC's default
    # the simulator (node-smpp) reads the absolute time back as a moment
    assert datetime.fromisoformat(validity["valid for two hours"]) == until
