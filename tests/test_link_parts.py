"""A link's parts (links/encoding.py: exactly as many as messages/parts.py counts, GSM 03.38
unpacked or UCS-2, behind an 8-bit-reference UDH), its receipts (links/receipts.py) and a
recipient's state from its parts' outcomes (links/service.py)."""

from __future__ import annotations

import pytest

from smsgw.domain.states import ProcessingState
from smsgw.links.encoding import (
    BINARY,
    IA5,
    LATIN1,
    UCS2,
    UDHI,
    TooManyParts,
    decode,
    encode,
)
from smsgw.links.receipts import ID_LENGTH, carrier_id, is_receipt, parse
from smsgw.links.repository import spellings
from smsgw.links.service import recipient_state, sender_of
from smsgw.messages.parts import count_parts, gsm_septets

TEXTS = [
    "", "hello", "a" * 160, "a" * 161, "€" * 80, "€" * 81, "x" * 152 + "€", "Привет" * 11,
    "Привет" * 12, "😀" * 35, "😀" * 36, "a" * 66 + "😀" * 2 + "é" * 100, "x" * 159 + "\x1b",
]  # fmt: skip


@pytest.mark.parametrize("text", TEXTS)
def test_a_text_goes_in_as_many_parts_as_it_is_counted(text: str) -> None:
    assert len(encode(text, 7).parts) == count_parts(text)


@pytest.mark.parametrize("text", TEXTS)
def test_the_parts_put_together_give_the_text_back(text: str) -> None:
    encoded = encode(text, 7)
    coding = encoded.data_coding
    assert "".join(decode(coding, part, encoded.esm_class) for part in encoded.parts) == text


def test_a_gsm_extension_character_is_never_split_between_two_parts() -> None:
    encoded = encode("x" * 152 + "€" + "y" * 10, 1)  # € would straddle septets 153 and 154
    first = encoded.parts[0][6:]
    assert len(first) == 152 and first == b"x" * 152
    assert encoded.parts[1][6:8] == b"\x1be"


def test_long_parts_carry_one_reference_their_count_and_their_number() -> None:
    encoded = encode("Ж" * 150, 0x1A5)
    assert (encoded.data_coding, encoded.esm_class) == (UCS2, UDHI)
    assert [p[:6] for p in encoded.parts] == [bytes([5, 0, 3, 0xA5, 3, n]) for n in (1, 2, 3)]
    assert [len(p) - 6 for p in encoded.parts] == [134, 134, 32]  # 67, 67, 16 characters


@pytest.mark.parametrize(
    ("letter", "per_part", "coding"), [("a", 153, 0), ("я", 67, 0), ("a", 134, LATIN1)]
)
def test_a_text_goes_in_at_most_255_parts(letter: str, per_part: int, coding: int) -> None:
    """The header counts the parts in one octet (a link with data_coding 3 or 1 counts its
    own parts: 134 octets each)."""
    most = encode(letter * per_part * 255, 9, coding)
    assert len(most.parts) == 255 and most.parts[-1][:6] == bytes([5, 0, 3, 9, 255, 255])
    with pytest.raises(TooManyParts) as raised:
        encode(letter * (per_part * 255 + 1), 9, coding)
    assert raised.value.parts == 256


@pytest.mark.parametrize(
    ("coding", "text", "sent_as", "lengths"),
    [
        (LATIN1, "Price 10$ @home_ £5 é {x}", LATIN1, [25]),
        (LATIN1, "é" * 140, LATIN1, [140]),
        (LATIN1, "é" * 141, LATIN1, [6 + 134, 6 + 7]),  # one octet a character, not septets
        (LATIN1, "a" * 153 + "ÿ" * 250, LATIN1, [140, 140, 140, 6 + 1]),
        (LATIN1, "10 €", UCS2, [8]),  # € is not Latin-1
        (IA5, "Price 10$ {x} ~`", IA5, [16]),
        (IA5, "a" * 141, IA5, [140, 6 + 7]),
        (IA5, "café", UCS2, [8]),  # é is not ASCII
        (0, "é" * 141, 0, [141]),  # GSM 7-bit: 160 septets in one SMS
        (0, "é" * 161, 0, [6 + 153, 6 + 8]),
    ],
)
def test_an_8_bit_link_sends_a_text_that_fits_its_alphabet_in_octets_else_ucs2(
    coding: int, text: str, sent_as: int, lengths: list[int]
) -> None:
    """A link with data_coding 1 (IA5) or 3 (Latin-1) sends a text whose every character is
    in that alphabet one octet a character, 140 in one SMS and 134 per part behind the
    header; any other text as UCS-2; with 0, GSM 7-bit as before."""
    encoded = encode(text, 5, coding)
    assert encoded.data_coding == sent_as
    assert [len(part) for part in encoded.parts] == lengths
    joined = "".join(decode(sent_as, part, encoded.esm_class) for part in encoded.parts)
    assert joined == text


def test_one_part_has_no_header() -> None:
    assert encode("hi", 3).parts == [b"hi"] and encode("hi", 3).esm_class == 0


def test_an_mo_with_a_message_class_is_read_in_the_alphabet_its_bit_2_names() -> None:
    """data_coding 0xF0-0xFF: the low two bits are the message class, bit 2 the alphabet
    (clear: GSM 7-bit, set: 8-bit data), not an SMPP data_coding of their own."""
    septets = b"\x00\x05Hi"
    assert gsm_septets("@éHi") == septets.decode("ascii")
    assert [decode(coding, septets, 0) for coding in (0xF0, 0xF1, 0xF3)] == ["@éHi"] * 3
    assert decode(0xF5, "é!".encode("latin-1"), 0) == "é!"  # (8-bit data as today)


@pytest.mark.parametrize(
    ("coding", "body", "text"),
    [
        (0x10, b"\x00\x05Hi", "@éHi"),  # general group, class 0: bits 3-2 00, GSM 7-bit
        (0x11, b"\x00\x05Hi", "@éHi"),
        (0x14, "é!".encode("latin-1"), "é!"),  # 01: 8-bit data
        (0x18, "Привет".encode("utf-16-be"), "Привет"),  # 10: UCS-2 (a flash SMS)
        (0x1B, "Привет".encode("utf-16-be"), "Привет"),
        (0x08 | 0x40, "你好".encode("utf-16-be"), "你好"),  # marked for automatic deletion
        (0x50, b"\x00\x05Hi", "@éHi"),
        (0x18 | 0x20, "é".encode("latin-1"), "é"),  # compressed: not read, 8-bit data
        (0xC0, b"\x00\x05Hi", "@éHi"),  # message waiting, discard: GSM 7-bit
        (0xD8, b"\x00\x05Hi", "@éHi"),  # message waiting, store: GSM 7-bit
        (0xE1, "Привет".encode("utf-16-be"), "Привет"),  # message waiting, store: UCS-2
        (0x80, "é".encode("latin-1"), "é"),  # reserved: as 8-bit data
    ],
)
def test_an_mo_in_a_coding_group_is_read_in_the_alphabet_its_bits_name(
    coding: int, body: bytes, text: str
) -> None:
    """data_coding above 0x0F is one of 3GPP TS 23.038's coding groups, not Latin-1."""
    assert decode(coding, body, 0) == text


#: A text in each of SMPP 3.4's national alphabets, as a carrier sends it.
NATIONAL_TEXTS = [
    (0x05, "こんにちは", "shift_jis"),  # JIS, sent as Shift_JIS
    (0x06, "Привет, мир", "iso8859_5"),  # Cyrillic
    (0x07, "שלום עולם", "iso8859_8"),  # Hebrew
    (0x09, "絵文字", "shift_jis"),  # pictograms, as Shift_JIS
    (0x0A, "音楽のコード", "iso2022_jp"),
    (0x0D, "丂", "iso2022_jp_1"),  # a kanji of JIS X 0212 only, behind its escape
    (0x0E, "안녕하세요", "euc_kr"),  # KS C 5601
]


@pytest.mark.parametrize(("coding", "text", "codec"), NATIONAL_TEXTS)
def test_an_mo_in_a_national_alphabet_is_read_in_it(coding: int, text: str, codec: str) -> None:
    """They were read as Latin-1: mojibake in the inbox."""
    assert decode(coding, text.encode(codec), 0) == text


def test_what_a_national_alphabet_cannot_read_is_the_replacement_character() -> None:
    assert decode(0x0E, b"ok \xff", 0) == "ok \ufffd"
    assert decode(0x05, b"\x82", 0) == "\ufffd"  # a Shift_JIS lead byte alone


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        (LATIN1, b"a\x00b"),
        (IA5, b"a\x00b"),
        (BINARY, b"a\x00b"),
        (2, b"a\x00b"),  # octets unspecified: as Latin-1
        (0x99, b"a\x00b"),  # a coding it does not know: as Latin-1
        (UCS2, "a\x00b".encode("utf-16-be")),
        (0x18, "a\x00b".encode("utf-16-be")),
    ],
)
def test_u0000_in_a_received_text_is_read_as_the_replacement_character(
    coding: int, body: bytes
) -> None:
    """PostgreSQL's text cannot hold U+0000: a received text holds U+FFFD in its place, on
    either engine; GSM 7-bit's septet 0 is `@`."""
    assert decode(coding, body, 0) == "a\ufffdb"
    assert decode(0, b"a\x00b", 0) == "a@b"


@pytest.mark.parametrize(
    ("address", "international", "sender"),
    [
        ("4915112345601", True, "+4915112345601"),
        ("4915112345601", False, "4915112345601"),
        ("+4915112345601", True, "+4915112345601"),
        ("ACME", True, "ACME"),  # an alphanumeric sender a carrier gives TON 1
        ("", True, ""),
        ("49 151 1234", True, "49 151 1234"),
        ("١٢٣", True, "١٢٣"),  # digits, but not ASCII ones
    ],
)
def test_an_international_mo_sender_gets_a_plus_only_before_digits(
    address: str, international: bool, sender: str
) -> None:
    assert sender_of(address, international) == sender


def test_a_receipt_is_read_from_its_tlvs_before_its_text() -> None:
    text = (
        b"id:0A sub:001 dlvrd:000 submit date:2612011200 done date:2612011200 stat:UNDELIV"
        b" err:034 text:"
    )
    receipt = parse(text, "000000FF\0", 2)
    assert receipt is not None
    assert (receipt.smsc_id, receipt.stat, receipt.err) == ("000000FF", "DELIVRD", "034")
    from_text = parse(text, None, None)
    assert from_text is not None and (from_text.smsc_id, from_text.stat) == ("0A", "UNDELIV")
    assert from_text.error() == "carrier receipt: stat:UNDELIV err:034"
    assert parse(b"no id here", None, None) is None
    enroute = parse(b"id:1 stat:ENROUTE", None, None)
    assert enroute is not None and not enroute.final


def test_a_carriers_id_is_also_looked_for_in_its_other_spellings() -> None:
    found = spellings("00ff1A")
    assert found[0] == "FF1A" and "00ff1A" not in found  # most alike first; never itself
    assert {"ff1a", "0000ff1a", "000000FF1A", "65306"} <= set(found)  # 0xff1a in decimal
    assert {"1a2b", "0000006699", "26265"} <= set(spellings("6699"))  # digits: hex both ways
    assert spellings("") == []  # an empty id names no part (it raised ValueError)


def test_without_bases_an_id_is_spelled_only_in_case_and_zeros() -> None:
    """runner.py `same_base`: the same number in the other base is not tried."""
    found = spellings("0000001A", bases=False)
    assert {"1A", "1a", "0000001a", "000000001A"} <= set(found)
    assert "26" not in {form.lstrip("0") for form in found}
    assert "12" not in {form.lstrip("0") for form in spellings("18", bases=False)}


def test_a_carriers_id_is_kept_to_its_first_nul_and_65_characters() -> None:
    """What a carrier gives as an id, in an answer or a receipt alike: a NUL ended it (and
    PostgreSQL's text cannot hold one), and a longer id than SMPP 3.4's 65 octets failed
    its column (the link then recorded nothing more until a restart)."""
    assert carrier_id(" 1A2B\0junk") == "1A2B"
    assert carrier_id("9" * 5000) == "9" * ID_LENGTH  # (its spellings once raised: int())
    assert len(spellings(carrier_id("9" * 5000))) > 0
    receipt = parse(b"id:AB\0CD stat:DELIVRD err:" + b"7" * 300, None, None)
    assert receipt is not None and (receipt.smsc_id, receipt.err) == ("AB", "7" * 16)
    from_tlv = parse(b"", "X" * 100 + "\0", 2)
    assert from_tlv is not None and from_tlv.smsc_id == "X" * ID_LENGTH


def test_a_receipt_without_a_state_is_not_final() -> None:
    """No message_state SMPP 3.4 defines and no stat: in the text: not UNKNOWN (which is a
    final failure when a carrier says it), but no state at all."""
    for receipt in (parse(b"id:1A err:000", None, None), parse(b"", "1A", 9), parse(b"", "1A", 0)):
        assert receipt is not None and receipt.stat == "" and not receipt.final
    said_unknown = parse(b"id:1A stat:UNKNOWN", None, None)
    assert said_unknown is not None and said_unknown.final and not said_unknown.delivered


def test_a_plain_message_with_a_receipted_id_is_a_receipt_only_with_a_state() -> None:
    assert is_receipt(0x04, None, None, b"anything")  # esm_class says so
    assert is_receipt(0x00, "1A", 2, b"")  # message_state
    assert is_receipt(0x00, "1A", None, b"id:1A stat:DELIVRD")
    assert not is_receipt(0x00, "1A", None, b"hello there")  # an incoming SMS
    assert not is_receipt(0x00, None, 2, b"id:1A stat:DELIVRD")


@pytest.mark.parametrize(
    ("outcomes", "state"),
    [
        ([("accepted", None), (None, None)], None),
        ([("accepted", None), ("accepted", None)], (ProcessingState.SENT, None)),
        ([("delivered", None), ("accepted", None)], (ProcessingState.SENT, None)),
        ([("delivered", None), ("delivered", None)], (ProcessingState.DELIVERED, None)),
        ([("delivered", None), ("undelivered", "e")], (ProcessingState.FAILED, "e")),
        ([("rejected", "r"), (None, None)], (ProcessingState.FAILED, "r")),
        ([("unknown", "u")], (ProcessingState.FAILED, "u")),
        ([("cancelled", None)], (ProcessingState.CANCELLED, None)),
    ],
)
def test_a_recipients_state_follows_its_parts(
    outcomes: list[tuple[str | None, str | None]],
    state: tuple[ProcessingState, str | None] | None,
) -> None:
    assert recipient_state(outcomes) == state
