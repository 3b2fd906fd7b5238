"""How many SMS parts a text takes, as a phone splits it (3GPP TS 23.038 / 23.040).

A text whose every character is in the GSM 7-bit default alphabet or its extension table
(the `gsm0338` package's codec) travels in septets: 160 in one part, 153 per part of a
longer text (the rest of each part holds the concatenation header); an extension character
(`€ [ ] { } ~ ^ | \\`, form feed) takes two septets and never straddles two parts. Any other
text travels as UCS-2: 70 code units in one part, 67 per part of a longer one, and a character
outside the Basic Multilingual Plane (an emoji) takes two units that stay in one part.
"""

from __future__ import annotations

from functools import lru_cache

from gsm0338 import Codec

GSM_SINGLE = 160
GSM_MULTI = 153
UCS2_SINGLE = 70
UCS2_MULTI = 67

_GSM = Codec()


@lru_cache(maxsize=4096)
def _septets(character: str) -> int:
    """The septets a character takes in GSM 7-bit (1, or 2 from the extension table), or 0
    when the alphabet lacks it."""
    try:
        encoded, _ = _GSM.encode(character)
    except UnicodeEncodeError:
        return 0
    return len(encoded)


def _ucs2_units(character: str) -> int:
    return 2 if ord(character) > 0xFFFF else 1


def _count(weights: list[int], single: int, multi: int) -> int:
    """Parts of a text whose characters weigh `weights`: one when it fits `single`, else
    packed greedily into parts of `multi`, no character split between two parts."""
    if sum(weights) <= single:
        return 1
    parts, used = 1, 0
    for weight in weights:
        if used + weight > multi:
            parts, used = parts + 1, 0
        used += weight
    return parts


def count_parts(text: str) -> int:
    """The parts `text` is sent as: 1 for an empty text."""
    septets = [_septets(character) for character in text]
    if all(septets):
        return _count(septets, GSM_SINGLE, GSM_MULTI)
    return _count([_ucs2_units(c) for c in text], UCS2_SINGLE, UCS2_MULTI)


def encoding_of(text: str) -> str:
    """`GSM-7` when every character is in the GSM 7-bit alphabet (with its extension), else
    `UCS-2`."""
    return "GSM-7" if all(_septets(character) for character in text) else "UCS-2"
