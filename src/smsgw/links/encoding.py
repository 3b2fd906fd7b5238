"""A text as the SMS parts a link submits, in the alphabet the link's `data_coding` names
when every character fits it, else UCS-2; a long text split into parts behind an
8-bit-reference concatenation header (UDH).

data_coding 0: GSM 03.38, split as messages/parts.py counts (so a link sends exactly
`partsCount` parts): 160 septets alone, 153 per part of a longer text, an extension
character (two septets) never split. It goes out as the `gsm0338` package's codec encodes
it, one septet per octet (unpacked, as SMPP carries it), through a table built from that
codec (messages/parts.py). data_coding 1 (IA5: ASCII) and 3 (Latin-1): one octet a
character, 140 alone, 134 per part behind the header's 6 octets: what one SMS holds as 8-bit
data, safe whether the SMSC sends them on so or as GSM septets (160 would fit those only),
so such a link may send more parts than `partsCount`. UCS-2 (any other text): 70 code
units alone, 67 per part, a surrogate pair never split, as UTF-16 big-endian. The header
numbers the parts in one octet: a text that needs more than MAX_PARTS cannot go
(TooManyParts).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from gsm0338 import Codec

from smsgw.messages import parts as counting

#: data_coding of UCS-2 (SMPP 3.4, 5.2.19).
UCS2 = 0x08
#: esm_class bit: short_message begins with a user data header.
UDHI = 0x40
_GSM = Codec()


#: The most parts a text goes in: the concatenation header counts them in one octet.
MAX_PARTS = 255
#: The largest reference of an SMS in parts: a header's 16-bit one, SMPP 3.4's 2-octet
#: sar_msg_ref_num.
MAX_REFERENCE = 0xFFFF

#: data_coding of 8-bit binary data (SMPP 3.4, 5.2.19).
BINARY = 0x04
#: data_coding of IA5 (ASCII) and of Latin-1 (SMPP 3.4, 5.2.19): the 8-bit alphabets a link
#: may name for its texts, each by the Python codec that writes it.
IA5, LATIN1 = 0x01, 0x03
EIGHT_BIT = {IA5: "ascii", LATIN1: "latin-1"}
#: Octets of an 8-bit text in one SMS, and in each part behind the concatenation header.
OCTETS_SINGLE, OCTETS_MULTI = 140, 134
#: The most bytes of data one SMS carries behind a port header (140 less its 7 octets), as
#: Android's SmsManager.sendDataMessage allows.
MAX_DATA = 133


@dataclass(slots=True)  # not frozen: made per message, and a frozen __init__ costs 4x
class Encoded:
    """The parts of a text (or of data), as submit_sm carries them."""

    data_coding: int
    esm_class: int
    parts: list[bytes]


class TooManyParts(ValueError):
    """A text that needs more than MAX_PARTS parts (`parts`): no header can number them."""

    def __init__(self, parts: int) -> None:
        super().__init__(f"{parts} parts, at most {MAX_PARTS}")
        self.parts = parts


def _chunks(text: str, weights: list[int], single: int, multi: int) -> list[str]:
    """`text` cut greedily into pieces of at most `multi` weight (one piece when all of it
    fits `single`), no character split: messages/parts.py's `_count`, piece by piece."""
    if sum(weights) <= single:
        return [text]
    pieces, start, used = [], 0, 0
    for at, weight in enumerate(weights):
        if used + weight > multi:
            pieces.append(text[start:at])
            start, used = at, 0
        used += weight
    pieces.append(text[start:])
    return pieces


def _septets(text: str) -> bytes:
    """An all-GSM text's septets, one an octet."""
    septets = counting.gsm_septets(text)
    assert septets is not None  # (a piece of an all-GSM text)
    return septets.encode("ascii")


def _udh(reference: int, total: int, number: int) -> bytes:
    """The concatenation header: IEI 00 (8-bit reference), its length 3, reference, total
    parts, this part's number (from 1)."""
    return bytes([0x05, 0x00, 0x03, reference & 0xFF, total, number])


def encode_data(data: bytes, port: int) -> Encoded:
    """Data for an application port as one SMS: a header with the application port
    addressing element (IEI 05: destination and source ports, 16 bits each; the source 0, as
    Android sends) and the data, at most MAX_DATA bytes (the caller checks)."""
    header = bytes([0x06, 0x05, 0x04, port >> 8, port & 0xFF, 0x00, 0x00])
    return Encoded(BINARY, UDHI, [header + data])


def _octets(text: str, data_coding: int) -> bytes | None:
    """`text` in the 8-bit alphabet `data_coding` names, or None when it names none or a
    character is outside it."""
    codec = EIGHT_BIT.get(data_coding)
    if codec is None:
        return None
    try:
        return text.encode(codec)
    except UnicodeEncodeError:
        return None


def _bodies(text: str, data_coding: int) -> tuple[int, list[bytes]]:
    """The data_coding `text` goes as on a link whose texts go as `data_coding`, and the
    user data of each of its parts (no header yet)."""
    octets = _octets(text, data_coding)
    if octets is not None:
        if len(octets) <= OCTETS_SINGLE:
            return data_coding, [octets]
        return data_coding, [
            octets[at : at + OCTETS_MULTI] for at in range(0, len(octets), OCTETS_MULTI)
        ]
    septets = None if data_coding in EIGHT_BIT else counting.gsm_septets(text)
    if septets is not None:
        if len(septets) <= counting.GSM_SINGLE:
            return data_coding, [septets.encode("ascii")]
        weights = counting.gsm_weights(text)
        pieces = _chunks(text, weights, counting.GSM_SINGLE, counting.GSM_MULTI)
        return data_coding, [_septets(piece) for piece in pieces]
    units = counting.ucs2_units(text)
    pieces = _chunks(text, units, counting.UCS2_SINGLE, counting.UCS2_MULTI)
    return UCS2, [piece.encode("utf-16-be") for piece in pieces]


@functools.lru_cache(maxsize=1024)
def encode(text: str, reference: int, data_coding: int = 0) -> Encoded:
    """`text` as parts on a link whose texts go as `data_coding` (0, IA5 or LATIN1: the
    module's docstring); `reference` tells a recipient's phone which parts belong together
    (only its low 8 bits are sent). Deterministic: the same text, reference and coding give
    the same parts, so a part can be submitted again after a restart in the same shape.
    Remembered for the last texts: a link encodes each message when it plans its parts and
    again when it submits them (the result is shared: do not change it). TooManyParts when
    the text needs more than MAX_PARTS parts."""
    coding, bodies = _bodies(text, data_coding)
    if len(bodies) == 1:
        return Encoded(coding, 0, bodies)
    total = len(bodies)
    if total > MAX_PARTS:
        raise TooManyParts(total)
    parts = [_udh(reference, total, n) + body for n, body in enumerate(bodies, start=1)]
    return Encoded(coding, UDHI, parts)


@dataclass(frozen=True)
class Segment:
    """Which part of an SMS in parts a received short_message is: the parts of one SMS share
    `reference`; `number` counts from 1 to `total`."""

    reference: int
    total: int
    number: int

    @property
    def valid(self) -> bool:
        return self.total > 1 and 1 <= self.number <= self.total


def split_header(body: bytes, esm_class: int) -> tuple[bytes, Segment | None]:
    """A received short_message's user data without its header (when esm_class says it
    begins with one), and the part it is when the header has a concatenation element:
    IEI 00 (8-bit reference) or 08 (16-bit reference), as 3GPP TS 23.040 9.2.3.24.1 and
    .8 lay them out; None when it has none (or a malformed one)."""
    if not esm_class & UDHI or not body:
        return body, None
    end = 1 + body[0]
    header, data = body[1:end], body[end:]
    at, found = 0, None
    while at + 2 <= len(header):
        iei, size = header[at], header[at + 1]
        value = header[at + 2 : at + 2 + size]
        if len(value) == size == 3 and iei == 0x00:
            found = Segment(value[0], value[1], value[2])
        elif len(value) == size == 4 and iei == 0x08:
            found = Segment(value[0] << 8 | value[1], value[2], value[3])
        at += 2 + size
    return data, found if found is not None and found.valid else None


#: The alphabet bits 3-2 of a general data coding group name (3GPP TS 23.038 section 4).
_BITS_3_2 = {0x00: 0, 0x04: BINARY, 0x08: UCS2}


def _alphabet(data_coding: int) -> int:
    """The SMPP data_coding (0x00-0x0F: SMPP 3.4, 5.2.19) whose alphabet a received one
    names. Above 0x0F, 3GPP TS 23.038 section 4's coding groups: in the general data coding
    groups (0x10-0x3F, and 0x40-0x7F: marked for automatic deletion) bits 3-2 name the
    alphabet: 00 the GSM 7-bit default alphabet, 01 8-bit data, 10 UCS-2 (11 is reserved),
    unless bit 5 says the text is compressed (TS 23.042, not read: 8-bit data); in the
    message waiting groups 0xC0-0xDF it is GSM 7-bit, in 0xE0-0xEF UCS-2; in 0xF0-0xFF the
    low bits are the message class and bit 2 the alphabet: clear, GSM 7-bit; set, 8-bit
    data. Anything else (0x80-0xBF: reserved) as 8-bit data."""
    if data_coding <= 0x0F:
        return data_coding
    if data_coding <= 0x7F and not data_coding & 0x20:
        return _BITS_3_2.get(data_coding & 0x0C, BINARY)
    if 0xC0 <= data_coding <= 0xDF:
        return 0
    if 0xE0 <= data_coding <= 0xEF:
        return UCS2
    if data_coding >= 0xF0:
        return BINARY if data_coding & 0x04 else 0
    return BINARY


#: What a received text holds in place of U+0000 (PostgreSQL's text cannot hold it).
NUL_REPLACEMENT = "\ufffd"


def decode(data_coding: int, body: bytes, esm_class: int) -> str:
    """The text of a received short_message (an MO): its header skipped when esm_class says
    it has one; GSM 03.38 for data_coding 0, UCS-2 for 8, Latin-1 for 3, ASCII (IA5) for 1,
    a national alphabet by its codec (`NATIONAL`), and the alphabet a coding group above
    0x0F names (`_alphabet`); any other coding (8-bit data among them) as Latin-1. U+0000
    (an octet 0 of 8-bit data, Latin-1 or ASCII, a UCS-2 unit 0) is read as U+FFFD, the
    replacement character: the same on either engine."""
    if esm_class & UDHI and body:
        body = body[1 + body[0] :]
    return _decoded(_alphabet(data_coding), body).replace("\x00", NUL_REPLACEMENT)


#: The national alphabets of SMPP 3.4 (5.2.19) a received text may come in, by the codec
#: each is read with (as Jasmin reads them): 5, JIS X 0208, and 9, pictograms, as Shift_JIS,
#: which carriers in Japan send under them; 6, Cyrillic (ISO-8859-5); 7, Hebrew
#: (ISO-8859-8); 10, ISO-2022-JP; 13, JIS X 0212, in ISO-2022-JP-1 (whose escapes name it);
#: 14, KS C 5601 (EUC-KR). What a codec cannot read is U+FFFD.
NATIONAL = {
    0x05: "shift_jis", 0x06: "iso8859_5", 0x07: "iso8859_8", 0x09: "shift_jis",
    0x0A: "iso2022_jp", 0x0D: "iso2022_jp_1", 0x0E: "euc_kr",
}  # fmt: skip


def _decoded(coding: int, body: bytes) -> str:
    if coding == UCS2:
        return body.decode("utf-16-be", errors="replace")
    if coding in NATIONAL:
        return body.decode(NATIONAL[coding], errors="replace")
    if coding == 0:
        try:
            return str(_GSM.decode(body)[0])
        except UnicodeDecodeError:
            return body.decode("latin-1")
    if coding == 1:
        return body.decode("ascii", errors="replace")
    return body.decode("latin-1")
