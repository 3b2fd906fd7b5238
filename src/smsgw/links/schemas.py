"""A link's settings as an operator gives them (CLI), checked against SMPP 3.4's limits."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from smsgw.domain.errors import InvalidInput

#: SMPP 3.4 (5.2.1-5.2.3): C-octet strings of at most this many characters.
SYSTEM_ID_LENGTH = 15
PASSWORD_LENGTH = 8
SYSTEM_TYPE_LENGTH = 12
SOURCE_LENGTH = 20
MAX_WINDOW = 1000
MAX_THROUGHPUT = 100_000


@dataclass(frozen=True)
class SmppSettings:
    """host, port, system_id, password, system_type, source address with TON/NPI,
    throughput (submit_sm per second), window (submit_sm awaiting their answer at most),
    data_coding of GSM 7-bit texts."""

    host: str
    port: int
    system_id: str
    password: str
    system_type: str = ""
    source_addr: str = ""
    source_ton: int = 5
    source_npi: int = 0
    throughput: int = 10
    window: int = 10
    data_coding: int = 0

    def __post_init__(self) -> None:
        _text("host", self.host, 253, required=True)
        _number("port", self.port, 1, 65535)
        _text("system_id", self.system_id, SYSTEM_ID_LENGTH, required=True)
        _text("password", self.password, PASSWORD_LENGTH)
        _text("system_type", self.system_type, SYSTEM_TYPE_LENGTH)
        _text("source_addr", self.source_addr, SOURCE_LENGTH)
        _number("source_ton", self.source_ton, 0, 6)
        _number("source_npi", self.source_npi, 0, 18)
        _number("throughput", self.throughput, 1, MAX_THROUGHPUT)
        _number("window", self.window, 1, MAX_WINDOW)
        if self.data_coding not in (0, 1, 3):
            raise InvalidInput(
                "data_coding: 0 (SMSC default alphabet, GSM 03.38), 1 (IA5) or 3 (Latin-1): "
                "the value sent with GSM 7-bit texts; UCS-2 texts always go as 8"
            )

    def row(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:  # the password never shows
        return f"SmppSettings(host={self.host!r}, port={self.port}, system_id={self.system_id!r})"


def _text(name: str, value: str, limit: int, required: bool = False) -> None:
    if required and not value.strip():
        raise InvalidInput(f"{name}: required")
    if len(value) > limit:
        raise InvalidInput(f"{name}: at most {limit} characters (SMPP 3.4)")
    if any(ord(c) < 32 or ord(c) > 126 for c in value):
        raise InvalidInput(f"{name}: printable ASCII characters only")


def _number(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise InvalidInput(f"{name}: a whole number from {low} to {high}")
