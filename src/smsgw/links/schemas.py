"""A link's settings as an operator gives them (CLI, dashboard), checked against SMPP 3.4's
limits; and a link as `GET /links` shows it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, Field

from smsgw.domain.errors import InvalidInput
from smsgw.messages.schemas import Timestamp

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
        found = problems(self.row())
        if found:
            raise InvalidInput(next(iter(found.values())))

    def row(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:  # the password never shows
        return f"SmppSettings(host={self.host!r}, port={self.port}, system_id={self.system_id!r})"


def problems(values: dict[str, Any]) -> dict[str, str]:
    """Every value of the settings (by field name) that breaks a rule, with its message
    ("port: a whole number from 1 to 65535"), in the fields' order; empty when all is well.
    The dashboard's form names each on its field; building SmppSettings raises the first."""
    checks = {
        "host": lambda v: _text("host", v, 253, required=True),
        "port": lambda v: _number("port", v, 1, 65535),
        "system_id": lambda v: _text("system_id", v, SYSTEM_ID_LENGTH, required=True),
        "password": lambda v: _text("password", v, PASSWORD_LENGTH),
        "system_type": lambda v: _text("system_type", v, SYSTEM_TYPE_LENGTH),
        "source_addr": lambda v: _text("source_addr", v, SOURCE_LENGTH),
        "source_ton": lambda v: _number("source_ton", v, 0, 6),
        "source_npi": lambda v: _number("source_npi", v, 0, 18),
        "throughput": lambda v: _number("throughput", v, 1, MAX_THROUGHPUT),
        "window": lambda v: _number("window", v, 1, MAX_WINDOW),
        "data_coding": _data_coding,
    }
    found = {}
    for name, check in checks.items():
        try:
            check(values[name])
        except InvalidInput as error:
            found[name] = error.message
    return found


def _data_coding(value: int) -> None:
    if value not in (0, 1, 3):
        raise InvalidInput(
            "data_coding: 0 (SMSC default alphabet, GSM 03.38), 1 (IA5) or 3 (Latin-1): "
            "the value sent with GSM 7-bit texts; UCS-2 texts always go as 8"
        )


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


# The wire shapes of `GET /links` (the 3rd-party API): a link's settings (never its
# password), its session and what it is doing (links/activity.py).


class LinkQueue(BaseModel):
    waiting: int = Field(
        description="Your queued messages this link could take now (no sender holds them; "
        "unpinned or pinned to this link; due and unexpired), counted up to 10,000. Your "
        "phones may take them first."
    )
    planned: int = Field(description="SMS parts the link has taken and not yet submitted.")
    inFlight: int = Field(
        description="SMS parts submitted whose answer (submit_sm_resp) is not recorded yet."
    )


class LinkRecent(BaseModel):
    since: Timestamp = Field(description="The start of the stretch counted (24 hours ago).")
    submitted: int = Field(description="SMS parts submitted since then.")
    accepted: int = Field(description="Of those, accepted and with no receipt (yet).")
    delivered: int = Field(description="Of those, with a receipt saying delivered.")
    undelivered: int = Field(description="Of those, with a receipt saying not delivered.")
    rejected: int = Field(description="Of those, refused by the SMSC.")
    noAnswer: int = Field(description="Of those, without an answer before the session ended.")
    lastMinute: int = Field(description="SMS parts submitted in the last minute.")


class LinkView(BaseModel):
    """A carrier link as the 3rd-party API lists it (smsgw's extension, docs/links.md)."""

    id: str = Field(description="The link's id: the `deviceId` of the messages it sends.")
    name: str
    kind: str = Field(description="`smpp`.")
    host: str
    port: int
    systemId: str
    systemType: str
    source: str = Field(description="The source address (sender) of every SMS.")
    sourceTon: int
    sourceNpi: int
    throughput: int = Field(description="submit_sm per second at most.")
    window: int = Field(description="submit_sm awaiting their answer at most.")
    dataCoding: int = Field(description="data_coding of texts sent in the GSM 7-bit alphabet.")
    state: str = Field(
        description="The session, as the server running the link last recorded it: `new`, "
        "`connecting`, `bound` or `down`."
    )
    detail: str | None = Field(description="Why, e.g. what a bind failed of; null when bound.")
    stateSince: Timestamp
    queue: LinkQueue
    recent: LinkRecent = Field(description="The last 24 hours.")
