"""A link's settings as an operator gives them (CLI, dashboard, `POST /links`), checked
against SMPP 3.4's limits by one set of rules; and a link as `GET /links` shows it."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

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
    data_coding of texts that fit its alphabet, bind mode (BIND_MODES)."""

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
    bind_mode: str = "transceiver"

    def __post_init__(self) -> None:
        found = problems(self.row())
        if found:
            raise InvalidInput(next(iter(found.values())))

    def row(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:  # the password never shows
        return f"SmppSettings(host={self.host!r}, port={self.port}, system_id={self.system_id!r})"


#: The settings' rules (SMPP 3.4's where it has one), which the CLI, the dashboard and the
#: API all apply through `problems`. Texts, printable ASCII: (most characters, required).
TEXTS = {
    "host": (253, True),
    "system_id": (SYSTEM_ID_LENGTH, True),
    "password": (PASSWORD_LENGTH, False),
    "system_type": (SYSTEM_TYPE_LENGTH, False),
    "source_addr": (SOURCE_LENGTH, False),
}
#: Whole numbers: (lowest, highest).
NUMBERS = {
    "port": (1, 65535),
    "source_ton": (0, 6),
    "throughput": (1, MAX_THROUGHPUT),
    "window": (1, MAX_WINDOW),
}
#: SMPP 3.4's numbering plans (5.2.6): unknown, ISDN (E.164), data (X.121), telex (F.69),
#: land mobile (E.212), national, private, ERMES, Internet (IP), WAP client id.
NPIS = (0, 1, 3, 4, 6, 8, 9, 10, 14, 18)
NPI_RULE = "one of SMPP 3.4's numbering plans: 0, 1, 3, 4, 6, 8, 9, 10, 14 or 18"
DATA_CODINGS = (0, 1, 3)
DATA_CODING_RULE = (
    "0 (SMSC default alphabet, GSM 03.38), 1 (IA5) or 3 (Latin-1): the alphabet texts go "
    "in when they fit it; other texts go as UCS-2 (8)"
)
#: How a link binds (links/session.py): one transceiver session, or a transmitter session
#: for submit_sm and a receiver session for what the SMSC delivers.
TRANSCEIVER, TX_RX = "transceiver", "tx_rx"
BIND_MODES = (TRANSCEIVER, TX_RX)
BIND_MODE_RULE = (
    "transceiver (one session) or tx_rx (a transmitter session to send and a receiver "
    "session to receive)"
)
#: A link's name: at most this many characters (none or blank: `service.DEFAULT_NAME`).
NAME_LENGTH = 128
#: What a name may not hold: control characters (escapes, line breaks, NUL), line and
#: paragraph separators and the bidirectional overrides, which would play tricks on the
#: terminal of an operator listing the links (`smsgw links list`) or on a page.
_NAME_REFUSED = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
NAME_PATTERN = f"^[^{_NAME_REFUSED}]*$"
NAME_RULE = "no control characters (line breaks, tabs, escapes)"
#: A host name (RFC 1123 labels of letters, digits, hyphens and, as some networks name
#: hosts, underscores; an IPv4 address is one too), or an IPv6 address in hex groups (RFC
#: 4291's forms with `::`; no zone, no embedded IPv4). Regular expressions that the API's
#: schema gives as they are (with the spaces around them that the API trims).
_LABEL = "[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = rf"{_LABEL}(\.{_LABEL})*\.?"
_H = "[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join((
    f"({_H}:){{7}}{_H}", f"({_H}:){{1,7}}:", f"({_H}:){{1,6}}:{_H}",
    f"({_H}:){{1,5}}(:{_H}){{1,2}}", f"({_H}:){{1,4}}(:{_H}){{1,3}}",
    f"({_H}:){{1,3}}(:{_H}){{1,4}}", f"({_H}:){{1,2}}(:{_H}){{1,5}}",
    f"{_H}:(:{_H}){{1,6}}", f":((:{_H}){{1,7}}|:)",
))  # fmt: skip
HOST_RULE = (
    "a host name or IP address, without a scheme, port or spaces (smsc.example.net, "
    "10.0.0.5, 2001:db8::5)"
)
_ORDER = ("name", "host", "port", "system_id", "password", "system_type", "source_addr",
          "source_ton", "source_npi", "throughput", "window", "data_coding",
          "bind_mode")  # fmt: skip


def problems(values: dict[str, Any]) -> dict[str, str]:
    """Every value of the settings (by field name) that breaks a rule, with its message
    ("port: a whole number from 1 to 65535"), in the fields' order; empty when all is well.
    `name` is checked when given. The dashboard's form names each on its field, the API
    under its own names (`LinkIn`); building SmppSettings raises the first."""
    found = {}
    for name in (name for name in _ORDER if name in values):
        try:
            _check(name, values[name])
        except InvalidInput as error:
            found[name] = error.message
    return found


def number_rule(name: str) -> str:
    """A number's rule in words: "a whole number from 1 to 65535"."""
    if name == "data_coding":
        return DATA_CODING_RULE
    if name == "source_npi":
        return NPI_RULE
    low, high = NUMBERS[name]
    return f"a whole number from {low} to {high}"


def _check(name: str, value: Any) -> None:
    if name == "name":
        if value is not None and len(value) > NAME_LENGTH:
            raise InvalidInput(f"name: at most {NAME_LENGTH} characters")
        if value is not None and not re.fullmatch(NAME_PATTERN, value):
            raise InvalidInput(f"name: {NAME_RULE}")
    elif name == "data_coding":
        _data_coding(value)
    elif name == "bind_mode":
        if value not in BIND_MODES:
            raise InvalidInput(f"bind_mode: {BIND_MODE_RULE}")
    elif name in TEXTS:
        _text(name, value, *TEXTS[name])
        if name == "host" and not _is_host(value):
            raise InvalidInput(f"host: {HOST_RULE}")
    elif name == "source_npi":
        if value not in NPIS:
            raise InvalidInput(f"source_npi: {NPI_RULE}")
    elif not NUMBERS[name][0] <= value <= NUMBERS[name][1]:
        raise InvalidInput(f"{name}: {number_rule(name)}")


def _is_host(value: str) -> bool:
    return bool(re.fullmatch(_HOST_NAME, value) or re.fullmatch(f"({_IPV6})", value))


def _data_coding(value: int) -> None:
    if value not in DATA_CODINGS:
        raise InvalidInput(f"data_coding: {DATA_CODING_RULE}")


def _text(name: str, value: str, limit: int, required: bool = False) -> None:
    if required and not value.strip():
        raise InvalidInput(f"{name}: required")
    if len(value) > limit:
        raise InvalidInput(f"{name}: at most {limit} characters (SMPP 3.4)")
    if any(ord(c) < 32 or ord(c) > 126 for c in value):
        raise InvalidInput(f"{name}: printable ASCII characters only")


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
    dataCoding: int = Field(
        description="The alphabet texts go in when they fit it: 0 (GSM 03.38), 1 (IA5) or 3 "
        "(Latin-1); other texts go as UCS-2 (8)."
    )
    bindMode: str = Field(
        description="`transceiver` (one session) or `tx_rx` (a transmitter session sends, a "
        "receiver session takes receipts and incoming SMS)."
    )
    allAccounts: bool = Field(
        False,
        description="A link the operator added for all accounts (`smsgw links add smpp "
        "--all-accounts`): it takes every account's queued messages, and this account holds "
        "it. Only the operator adds one.",
    )
    state: str = Field(
        description="The session, as the server running the link last recorded it: `new`, "
        "`connecting`, `bound` or `down`."
    )
    detail: str | None = Field(description="Why, e.g. what a bind failed of; null when bound.")
    stateSince: Timestamp
    queue: LinkQueue
    recent: LinkRecent = Field(description="The last 24 hours.")


# `POST /links`: the settings under the API's names (LinkView's), checked by `problems`.

#: The API's names of the settings, where they differ from SmppSettings'.
WIRE_NAMES = {
    "system_id": "systemId", "system_type": "systemType", "source_addr": "source",
    "source_ton": "sourceTon", "source_npi": "sourceNpi", "data_coding": "dataCoding",
    "bind_mode": "bindMode",
}  # fmt: skip
_SETTING_OF = {wire: name for name, wire in WIRE_NAMES.items()}
_PRINTABLE = "^[ -~]*$"
_PRINTABLE_NOT_BLANK = "^[ -~]*[!-~][ -~]*$"


def _text_schema(name: str) -> dict[str, Any]:
    """Text setting `name`'s rules (TEXTS) in JSON Schema's words, for the API's document."""
    limit, required = TEXTS[name]
    return {"maxLength": limit, "pattern": _PRINTABLE_NOT_BLANK if required else _PRINTABLE}


def _number_schema(name: str) -> dict[str, Any]:
    """Number setting `name`'s rules (NUMBERS) in JSON Schema's words."""
    if name == "data_coding":
        return {"enum": list(DATA_CODINGS)}
    if name == "source_npi":
        return {"enum": list(NPIS)}
    low, high = NUMBERS[name]
    return {"minimum": low, "maximum": high}


class LinkIn(BaseModel):
    """`POST /links`: an SMPP link's settings, as the CLI and the dashboard take them; the
    same rules (`problems`), each broken one named under its name here."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr | None = Field(
        None, json_schema_extra={"maxLength": NAME_LENGTH, "pattern": NAME_PATTERN},
        examples=["Carrier A"],
        description=f"The link's name, {NAME_RULE}; none or blank: `SMPP link`.",
    )  # fmt: skip
    host: StrictStr = Field(
        json_schema_extra={
            "maxLength": TEXTS["host"][0],
            "pattern": f"^ *({_HOST_NAME}|{_IPV6}) *$",
        },
        examples=["smsc.example.net"],
        description=f"The SMSC's host: {HOST_RULE}.",
    )  # fmt: skip
    port: StrictInt = Field(
        json_schema_extra=_number_schema("port"),
        examples=[2775],
        description="The SMSC's SMPP port.",
    )
    systemId: StrictStr = Field(
        json_schema_extra=_text_schema("system_id"), examples=["alice01"],
        description="The login (system_id) the carrier gave you.",
    )  # fmt: skip
    password: StrictStr = Field(
        "", json_schema_extra=_text_schema("password"), examples=["s3cret"],
        description="The password the carrier gave you. Never shown again.", repr=False,
    )  # fmt: skip
    systemType: StrictStr = Field(
        "", json_schema_extra=_text_schema("system_type"), examples=[""],
        description="system_type, if the carrier asks for one.",
    )  # fmt: skip
    source: StrictStr = Field(
        "", json_schema_extra=_text_schema("source_addr"), examples=["SMSGW"],
        description="The source address (sender) of every SMS.",
    )  # fmt: skip
    sourceTon: StrictInt = Field(
        5, json_schema_extra=_number_schema("source_ton"), examples=[5],
        description="The source address's TON: 5 alphanumeric, 1 international.",
    )  # fmt: skip
    sourceNpi: StrictInt = Field(
        0, json_schema_extra=_number_schema("source_npi"), examples=[0],
        description="The source address's NPI: 0 unknown, 1 ISDN (E.164).",
    )  # fmt: skip
    throughput: StrictInt = Field(
        10, json_schema_extra=_number_schema("throughput"), examples=[50],
        description="submit_sm per second at most, as the carrier contracts.",
    )  # fmt: skip
    window: StrictInt = Field(
        10, json_schema_extra=_number_schema("window"), examples=[10],
        description="submit_sm awaiting their answer at most.",
    )  # fmt: skip
    dataCoding: StrictInt = Field(
        0, json_schema_extra=_number_schema("data_coding"), examples=[0],
        description="The alphabet texts go in when they fit it: 0 (SMSC default alphabet, "
        "GSM 03.38: 160 septets in one SMS, 153 per part), 1 (IA5) or 3 (Latin-1): one octet "
        "a character, 140 in one SMS, 134 per part, so a text may take more parts than its "
        "partsCount. Other texts go as UCS-2 (8).",
    )  # fmt: skip
    bindMode: StrictStr = Field(
        TRANSCEIVER, json_schema_extra={"enum": list(BIND_MODES)}, examples=[TRANSCEIVER],
        description="How the link binds: `transceiver`, one session that sends and receives; "
        "`tx_rx`, a transmitter session that sends and a receiver session that takes "
        "receipts and incoming SMS (for SMSCs that want them apart).",
    )  # fmt: skip
    allAccounts: StrictBool = Field(
        False, examples=[False], json_schema_extra={"enum": [False]},
        description="Only `false`: a link for all accounts is the operator's to add "
        "(`smsgw links add smpp --all-accounts`); a link added here is the caller's own.",
    )  # fmt: skip

    @field_validator(
        "port", "sourceTon", "sourceNpi", "throughput", "window", "dataCoding", mode="before"
    )
    @classmethod
    def _whole(cls, value: object, info: ValidationInfo) -> object:
        """An integer as JSON Schema means it (`2775` or `2775.0`; never a boolean or a
        string); anything else refused in the rule's words."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            field = info.field_name or ""
            raise ValueError(number_rule(_SETTING_OF.get(field, field)))
        return value

    @field_validator("host", "systemId", "systemType", "source", mode="after")
    @classmethod
    def _trimmed(cls, value: str, info: ValidationInfo) -> str:
        """Spaces around a name or address are no part of it (as the dashboard's form takes
        them); the password's are its own. The schema's maxLength holds for the value as
        given, spaces and all."""
        limit = TEXTS[_SETTING_OF.get(info.field_name or "", info.field_name or "")][0]
        if len(value) > limit:
            raise ValueError(f"at most {limit} characters (SMPP 3.4)")
        return value.strip(" ")

    @field_validator("bindMode", mode="before")
    @classmethod
    def _mode(cls, value: object) -> object:
        """Anything but a string refused in the rule's words, as a string that is no mode."""
        if not isinstance(value, str):
            raise ValueError(BIND_MODE_RULE)
        return value

    @field_validator("allAccounts", mode="after")
    @classmethod
    def _own(cls, value: bool) -> bool:
        if value:
            raise ValueError(ALL_ACCOUNTS_RULE)
        return value

    @model_validator(mode="after")
    def _follows_the_rules(self) -> LinkIn:
        found = problems({"name": self.name, **self.settings_values()})
        if found:
            raise ValueError("; ".join(_renamed(message) for message in found.values()))
        return self

    def settings_values(self) -> dict[str, Any]:
        """The settings under SmppSettings' names."""
        given = self.model_dump(exclude={"name", "allAccounts"})
        return {_SETTING_OF.get(wire, wire): value for wire, value in given.items()}

    def settings(self) -> SmppSettings:
        return SmppSettings(**self.settings_values())


#: Why `POST /links` refuses `allAccounts: true`.
ALL_ACCOUNTS_RULE = (
    "only the operator adds a link for all accounts (smsgw links add smpp --all-accounts); "
    "a link added through the API is your account's own"
)


def _renamed(message: str) -> str:
    """A rule's message under the API's name of its field ("systemId: required")."""
    name, _, rule = message.partition(": ")
    return f"{WIRE_NAMES.get(name, name)}: {rule}"
