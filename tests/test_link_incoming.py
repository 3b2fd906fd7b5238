"""What a carrier puts in an incoming SMS (MO) beyond what SMPP 3.4 allows or what a
database column holds, through a real running smsgw (docs/links.md "Incoming SMS"): the
SMS goes to the inbox alike on SQLite and PostgreSQL, never lost after the carrier had its
deliver_sm_resp.

A text holding U+0000 (PostgreSQL's text cannot hold it) is stored with U+FFFD in its place;
a sender longer than the 20 characters SMPP allows is cut to 32, alike for one SMS and for
one in parts; sar_* TLVs wider than SMPP's make the part an SMS of its own; a part the
carrier delivers again after its SMS was joined is dropped; and the log says so without the
SMS's text (the smpp34 SMSC for the TLVs, the npm simulator for the rest)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import smpp34

from smsgw.config import Settings
from smsgw.links import service
from smsgw.links.encoding import UDHI
from smsgw.links.service import MO_PARTS_WAIT
from tests.conftest import Account, LiveServer, database_rows
from tests.fakes.receiver import Receiver
from tests.fakes.smpp34_smsc import Smpp34Smsc
from tests.fakes.smsc import Smsc, wait_until
from tests.test_link_messages import SENDER, barrier, inbox, inbox_is, kept, udh8
from tests.test_link_parts import NATIONAL_TEXTS
from tests.test_links import add_link, bound, hook, said
from tests.webhook_support import hub_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return hub_settings(tmp_path / "data", link_connect_timeout_seconds=2)


@pytest.fixture
def link(server: LiveServer, alice: Account, smsc: Smsc) -> str:
    link_id = add_link(server, smsc, alice.login)
    bound(server, link_id)
    return link_id


def messages(api: httpx.Client) -> list[tuple[str, str]]:
    """(sender, text) of each inbox message, sorted."""
    return sorted((m["sender"], m["message"]) for m in api.get("/inbox").json())


def webhook_texts(receiver: Receiver) -> list[str]:
    return sorted(r.json()["payload"]["message"] for r in receiver.delivered())


def test_u0000_in_a_text_is_stored_as_u_fffd_alike_on_either_engine(
    server: LiveServer, api: httpx.Client, link: str, smsc: Smsc, receiver: Receiver
) -> None:
    """Latin-1, IA5, 8-bit data (data_coding 4 and 2: read as Latin-1) with an octet 0,
    UCS-2 with a unit 0, and a long SMS in two parts: on PostgreSQL each was lost (its
    insert refused) after the carrier had its deliver_sm_resp."""
    hook(api, receiver, "sms:received")
    sent = [
        ("3", b"Latin-1 \x00 end"), ("1", b"IA5 \x00 end"), ("4", b"\x00 data"),
        ("2", b"octets \x00 end"), ("8", "UCS-2 \x00 end".encode("utf-16-be")),
    ]  # fmt: skip
    for coding, body in sent:
        assert smsc.mo(SENDER, hex=body.hex(), dc=coding) == 1
    for number, piece in ((1, b"first \x00 part, "), (2, b"second part")):
        body = udh8(3, 2, number) + piece.hex()
        assert smsc.mo(SENDER, hex=body, esm=str(UDHI), dc="3") == 1
    barrier(api, smsc, "after them")
    expected = [
        "Latin-1 \ufffd end", "IA5 \ufffd end", "\ufffd data", "octets \ufffd end",
        "UCS-2 \ufffd end", "first \ufffd part, second part", "after them",
    ]  # fmt: skip
    inbox_is(api, expected)
    wait_until(lambda: len(receiver.delivered()) == len(expected), what="each sms:received")
    assert webhook_texts(receiver) == sorted(expected)


def test_a_sender_longer_than_smpp_allows_is_cut_alike_in_one_sms_and_in_parts(
    server: LiveServer,
    api: httpx.Client,
    link: str,
    smsc: Smsc,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SMPP 3.4's source_addr holds 20 characters; smpp34 reads longer ones. A part of a long
    SMS from a sender of more than 31 failed on PostgreSQL (link_mo_parts.sender is 32
    wide), and was lost; the sender an SMS is stored under is cut to 32 characters (its
    `+` counted) however it came."""
    caplog.set_level(logging.WARNING, logger="smsgw.links")
    number, name = "49151" + "1234567890" * 4, "A-very-long-alphanumeric-sender-name"
    for sender in (number, name):
        for part, piece in ((1, "a long SMS in "), (2, "two parts")):
            body = udh8(4, 2, part) + piece.encode().hex()
            assert smsc.mo(sender, hex=body, esm=str(UDHI)) == 1
        assert smsc.mo(sender, "one SMS") == 1
    barrier(api, smsc, "after them")
    cut = ("+" + number)[:32]
    wait_until(lambda: messages(api) == sorted([
        (cut, "a long SMS in two parts"), (cut, "one SMS"),
        (name[:32], "a long SMS in two parts"), (name[:32], "one SMS"),
        ("+" + SENDER, "after them"),
    ]), what="each SMS in the inbox")  # fmt: skip
    # (the link's readers hand deliver_sm over in any order: links/session.READERS)
    warned = sorted(line for line in said(caplog) if "sender of" in line)
    assert warned == sorted([
        f"link {link}: an incoming SMS's sender of {length} characters is cut to 32"
        " (SMPP 3.4 allows 20)"
        for length in (len(number) + 1, len(name)) for _ in range(3)
    ])  # fmt: skip


@pytest.fixture
def smsc34() -> Iterator[Smpp34Smsc]:
    started = Smpp34Smsc().start()
    yield started
    started.stop()


def sar(reference: bytes, total: bytes, number: bytes) -> list[smpp34.Tlv]:
    return [
        smpp34.Tlv(smpp34.TLV_SAR_MSG_REF_NUM, reference),
        smpp34.Tlv(smpp34.TLV_SAR_TOTAL_SEGMENTS, total),
        smpp34.Tlv(smpp34.TLV_SAR_SEGMENT_SEQNUM, number),
    ]


def test_sar_values_wider_than_smpp_allows_make_the_part_an_sms_of_its_own(
    server: LiveServer,
    api: httpx.Client,
    alice: Account,
    smsc34: Smpp34Smsc,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """sar_msg_ref_num is 2 octets and sar_total_segments 1 (SMPP 3.4, 5.3.2.22-23); smpp34
    reads 4 octets too. A reference beyond 2**31 or a count beyond 32767 failed on
    PostgreSQL (link_mo_parts' integer columns), and was lost; on SQLite such parts waited
    30 minutes. Beyond SMPP's sizes (a reference over 65535, more than 255 parts), the part
    is taken as an SMS of its own."""
    caplog.set_level(logging.WARNING, logger="smsgw.links")
    link_id = add_link(server, smsc34, alice.login)
    bound(server, link_id)
    wide = (2**32 - 1).to_bytes(4, "big")
    assert smsc34.mo(SENDER, b"reference of 4 octets", 0, sar(wide, b"\x02", b"\x01")) == 1
    many = (40_000).to_bytes(4, "big")
    assert smsc34.mo(SENDER, b"40000 parts", 0, sar(b"\x00\x09", many, b"\x00\x01")) == 1
    assert smsc34.mo(SENDER, b"two ", 0, sar(b"\x01\x00", b"\x02", b"\x01")) == 1
    assert smsc34.mo(SENDER, b"parts", 0, sar(b"\x01\x00", b"\x02", b"\x02")) == 1
    inbox_is(api, ["reference of 4 octets", "40000 parts", "two parts"])
    assert kept(server) == 0
    warned = sorted(line for line in said(caplog) if "sar_" in line)  # (in any order)
    assert warned == sorted(
        f"link {link_id}: an incoming SMS's sar_* TLVs are beyond SMPP 3.4's sizes (reference"
        f" {n}, {total} parts); taken as an SMS of its own"
        for n, total in ((2**32 - 1, 2), (9, 40_000))
    )


def test_a_part_delivered_again_after_its_sms_was_joined_is_dropped(
    at: list[datetime],
    server: LiveServer,
    api: httpx.Client,
    link: str,
    smsc: Smsc,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The carrier delivers part 1 again after the SMS was joined: it was kept, and 30
    minutes later went to the inbox and the webhooks as a second SMS. Within 30 minutes of
    the join, a part with the same number and user data as one joined is dropped; another
    under the same reference (the sender's phone used it again) starts a new SMS."""
    caplog.set_level(logging.INFO, logger="smsgw.links")
    hook(api, receiver, "sms:received")

    def part(number: int, text: str) -> None:
        body = udh8(7, 2, number) + text.encode().hex()
        assert smsc.mo(SENDER, hex=body, esm=str(UDHI)) == 1

    def dropped() -> list[str]:  # (in any order)
        return sorted(line for line in said(caplog) if "again" in line)

    part(1, "The first part, ")
    part(2, "the second.")
    wait_until(lambda: "The first part, the second." in inbox(api), what="the SMS joined")
    part(1, "The first part, ")  # again
    barrier(api, smsc, "after the repeat")
    wait_until(lambda: len(dropped()) == 1, what="the repeat dropped")
    part(2, "and its end.")  # a new SMS under the same reference, its part 2 first
    part(1, "Another SMS, ")
    wait_until(lambda: "Another SMS, and its end." in inbox(api), what="the second joined")
    part(2, "and its end.")  # again, after the second SMS was joined
    barrier(api, smsc, "after the second repeat")
    wait_until(lambda: len(dropped()) == 2, what="the second repeat dropped")  # (clock moves)

    at[0] += MO_PARTS_WAIT + timedelta(seconds=1)
    wait_until(lambda: joined_rows(server) == 0, what="the joined parts forgotten")
    barrier(api, smsc, "30 minutes later")
    expected = [
        "The first part, the second.", "after the repeat", "Another SMS, and its end.",
        "after the second repeat", "30 minutes later",
    ]  # fmt: skip
    assert sorted(inbox(api)) == sorted(expected)
    wait_until(lambda: len(receiver.delivered()) == len(expected), what="each sms:received")
    assert webhook_texts(receiver) == sorted(expected)
    assert dropped() == [
        f"link {link}: part {n} of 2 of an incoming SMS came again after its SMS was joined;"
        " dropped"
        for n in (1, 2)
    ]


def joined_rows(server: LiveServer) -> int:
    [(count,)] = database_rows(
        server.settings, "SELECT count(*) FROM link_mo_parts WHERE joined_at IS NOT NULL"
    )
    return int(count)


def test_an_sms_in_a_national_alphabet_reaches_the_inbox_in_its_letters(
    api: httpx.Client, link: str, smsc: Smsc
) -> None:
    """Each of SMPP 3.4's national alphabets (Cyrillic, Hebrew, Shift_JIS, ISO-2022-JP,
    KS C 5601...) was read as Latin-1."""
    for coding, text, codec in NATIONAL_TEXTS:
        assert smsc.mo(SENDER, hex=text.encode(codec).hex(), dc=str(coding)) == 1
    barrier(api, smsc, "after them")
    inbox_is(api, [text for _, text, _ in NATIONAL_TEXTS] + ["after them"])


def waiting_parts(server: LiveServer, link_id: str) -> int:
    query = "SELECT count(*) FROM link_mo_parts WHERE joined_at IS NULL AND device_id = ?"
    [(count,)] = database_rows(server.settings, query, (link_id,))
    return int(count)


def test_parts_of_links_no_process_runs_never_hold_up_those_of_links_it_runs(
    at: list[datetime],
    server: LiveServer,
    alice: Account,
    smsc: Smsc,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each second the process looks for SMS whose parts waited 30 minutes, 100 at a time
    (here 3). It looked among those of every link: 100 waiting for a link no process runs
    (disabled, or held by a node that is gone) came first each time, and the late parts of
    the links it runs waited for ever. Four lone parts reach two links; then the process
    runs only the second, by its id the later."""
    monkeypatch.setattr(service, "STALE_MO_AT_ONCE", 3)
    first, second = sorted(add_link(server, smsc, alice.login) for _ in range(2))
    for link_id in (first, second):
        bound(server, link_id)
    for reference in range(4):
        body = udh8(reference, 2, 1) + f"part 1 of {reference}".encode().hex()
        assert smsc.mo(SENDER, hex=body, esm=str(UDHI)) == 2
    wait_until(
        lambda: [waiting_parts(server, first), waiting_parts(server, second)] == [4, 4],
        what="the parts kept",
    )

    real, asked = service.lease, [0]

    async def only_the_second(*args: Any) -> Any:
        asked[0] += 1
        return [(link, until) for link, until in await real(*args) if link.device_id == second]

    monkeypatch.setattr(service, "lease", only_the_second)
    # The second round to ask began after the first ended: none runs the first link now.
    wait_until(lambda: asked[0] >= 2, what="two rounds of the second link alone")
    at[0] += MO_PARTS_WAIT + timedelta(seconds=1)
    wait_until(lambda: waiting_parts(server, second) == 0, what="the second's parts taken in")
    [(taken,)] = database_rows(
        server.settings, "SELECT count(*) FROM inbox WHERE device_id = ?", (second,)
    )
    assert taken == 4
    assert waiting_parts(server, first) == 4  # no process runs it: they wait for it
