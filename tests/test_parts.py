"""How many parts a text is sent as (messages/parts.py), at each boundary of both encodings."""

from __future__ import annotations

import pytest

from smsgw.messages.parts import count_parts, encoding_of

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
