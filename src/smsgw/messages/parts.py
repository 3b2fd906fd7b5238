"""How many SMS parts a text takes, as a phone splits it (3GPP TS 23.038 / 23.040).

A text whose every character is in the GSM 7-bit default alphabet or its extension table
(the `gsm0338` package's codec) travels in septets: 160 in one part, 153 per part of a
longer text (the rest of each part holds the concatenation header); an extension character
(`€ [ ] { } ~ ^ | \\`, form feed) takes two septets and never straddles two parts. A literal
escape (U+001B) is not taken as GSM (`ESC`). Any other text travels as UCS-2: 70 code units
in one part, 67 per part of a longer one, and a character outside the Basic Multilingual
Plane (an emoji) takes two units that stay in one part.
"""

from __future__ import annotations

import contextlib

from gsm0338 import Codec

GSM_SINGLE = 160
GSM_MULTI = 153
UCS2_SINGLE = 70
UCS2_MULTI = 67

_GSM = Codec()
#: What stands for a character outside the alphabet in `_SEPTETS` (any non-ASCII character).
_OUTSIDE = "\u0100"
#: The escape to the extension table. The codec encodes a literal U+001B as that septet, but
#: a phone reads it as an escape and loses the character after it (and a part could end in
#: a lone one): a text with it is not GSM here, so it goes as UCS-2.
ESC = "\x1b"


def _septet_table() -> dict[int, str]:
    """Each character of GSM 03.38 (the default alphabet and its extension table), by code
    point, as the septets the codec sends it as: a string of code points 0-127, one a
    septet (an extension character: ESC and its septet). Every other ASCII code point maps
    to `_OUTSIDE`, so a text is all GSM exactly when its translation is ASCII. Built once
    from the codec itself: every character it decodes a septet (or ESC and a septet) to,
    and every Latin-1 one, kept when it encodes; but ESC itself (U+001B) is outside."""
    candidates = {chr(code) for code in range(256)}
    for encoded in [bytes([value]) for value in range(128)] + [
        bytes([0x1B, value]) for value in range(128)
    ]:
        with contextlib.suppress(UnicodeDecodeError, KeyError):
            candidates.add(str(_GSM.decode(encoded)[0]))
    table: dict[int, str] = {code: _OUTSIDE for code in range(128)}
    for character in candidates:
        if len(character) != 1 or character == ESC:
            continue
        try:
            table[ord(character)] = bytes(_GSM.encode(character)[0]).decode("ascii")
        except UnicodeEncodeError:
            continue
    return table


#: str.translate's table from a text to its GSM septets (`_septet_table`).
_SEPTETS = _septet_table()


def gsm_septets(text: str) -> str | None:
    """`text` as GSM 7-bit septets (a string of code points 0-127, one a septet, unpacked:
    what SMPP carries), or None when a character is outside the alphabet."""
    septets = text.translate(_SEPTETS)
    return septets if septets.isascii() else None


def gsm_weights(text: str) -> list[int]:
    """The septets each character of an all-GSM text takes (1, or 2 from the extension
    table)."""
    return [len(_SEPTETS[ord(character)]) for character in text]


def ucs2_units(text: str) -> list[int]:
    """The UCS-2 code units each character takes (2 outside the Basic Multilingual Plane)."""
    return [2 if ord(character) > 0xFFFF else 1 for character in text]


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
    septets = gsm_septets(text)
    if septets is not None:
        return 1 if len(septets) <= GSM_SINGLE else _count(gsm_weights(text), 0, GSM_MULTI)
    if len(text) <= UCS2_SINGLE // 2:  # (even if every character took two units)
        return 1
    return _count(ucs2_units(text), UCS2_SINGLE, UCS2_MULTI)


def encoding_of(text: str) -> str:
    """`GSM-7` when every character is in the GSM 7-bit alphabet (with its extension), else
    `UCS-2`."""
    return "GSM-7" if gsm_septets(text) is not None else "UCS-2"
