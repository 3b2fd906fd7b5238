"""How many parts a text is sent as (messages/parts.py), at each boundary of both encodings."""

from __future__ import annotations

import pytest
from gsm0338 import Codec

from smsgw.messages.parts import count_parts, encoding_of, gsm_septets, gsm_weights

pytestmark = pytest.mark.one_engine("no database")  # conftest.py


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # an extension character takes two septets
        ("€" * 81, 2),
        ("a" * 152 + "€", 1),
        ("a" * 152 + "€" + "a" * 7, 2),  # 162 septets: the euro does not straddle parts
        ("a" * 152 + "€" + "a" * 152, 3),
        ("Ünïcode-free but accented: é à ü ñ Ä", 1),  # in the GSM alphabet
        ("я" * 70, 1),
        ("я" * 71, 2),
        ("я" * 134, 2),
        ("я" * 135, 3),
        ("a" * 69 + "я", 1),  # one non-GSM character makes the whole text UCS-2
        ("a" * 70 + "я", 2),
        ("😀" * 35, 1),  # outside the BMP: two units each
        ("😀" * 36, 2),
        ("a" * 66 + "😀" + "a" * 3, 2),  # 70 units fit, but 71 do not
        ("a" * 66 + "😀" + "a" * 2, 1),
    ],
)
def test_parts(text: str, parts: int) -> None:
    assert count_parts(text) == parts


def test_a_surrogate_pair_stays_in_one_part() -> None:
    # 134 units would fill two parts of 67, but the emoji cannot take the first part's
    # 67th unit and the one after it: it starts the second part, and one unit spills over
    assert count_parts("a" * 66 + "😀" + "a" * 66) == 3
    assert count_parts("a" * 66 + "😀" + "a" * 65) == 2


def test_encoding() -> None:
    assert encoding_of("Your code is 1234 {ok}") == "GSM-7"
    assert encoding_of("Код 1234") == "UCS-2"
    assert encoding_of("") == "GSM-7"


def test_the_septet_table_encodes_every_character_as_the_codec_does() -> None:
    """messages/parts.py translates texts through a table built from the `gsm0338` codec:
    for every character of the Basic Multilingual Plane (and one beyond it), the table and
    the codec agree on whether it is GSM and on its septets (the escape first for the
    extension table's); all but the escape itself (U+001B), which the codec takes as one
    septet and the table leaves out (`test_a_literal_escape_makes_a_text_ucs2`)."""
    codec = Codec()
    differ = []
    for code in [*range(0x1B), *range(0x1C, 0xD800), *range(0xE000, 0x10000), 0x1F600]:
        character = chr(code)
        try:
            expected: bytes | None = bytes(codec.encode(character)[0])
        except UnicodeEncodeError:
            expected = None
        septets = gsm_septets(character)
        if (septets.encode("ascii") if septets is not None else None) != expected:
            differ.append(hex(code))
    assert differ == []
    assert gsm_septets("€[x") == "\x1be\x1b<x" and gsm_septets("x`") is None  # (` is not GSM)
    assert gsm_weights("a€") == [1, 2]


def test_a_literal_escape_makes_a_text_ucs2() -> None:
    """U+001B as a septet is the escape to the extension table: a phone would read it with
    the septet after it (losing that character), and a part could end in a lone one."""
    assert gsm_septets("a\x1bb") is None
    assert encoding_of("code \x1b 1234") == "UCS-2"
    assert count_parts("\x1b" * 70) == 1 and count_parts("\x1b" * 71) == 2
