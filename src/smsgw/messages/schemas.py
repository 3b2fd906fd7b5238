"""Wire shapes of the messages API (camelCase, as the seed and the upstream server use)."""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core.core_schema import CoreSchema

from smsgw.domain import ids
from smsgw.domain.clock import format_timestamp
from smsgw.domain.states import ProcessingState

#: A client's own id: it is a path segment of the routes that read it (domain/ids.py).
ClientId = Annotated[
    str,
    Field(min_length=1, max_length=36, json_schema_extra={"pattern": ids.CLIENT_ID_PATTERN}),
    AfterValidator(ids.check_client_id),
]
Timestamp = Annotated[datetime, PlainSerializer(format_timestamp, return_type=str)]
MAX_TEXT = 65535

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def _rfc3339_text(value: object) -> object:
    """Only RFC 3339 text: pydantic alone would also read numbers as Unix timestamps."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError(
            "must be an RFC 3339 date-time with a time zone, such as 2025-01-31T12:00:00Z"
        )
    return value


def _in_utc(value: datetime) -> datetime:
    """The same instant in UTC; refused when that falls outside years 1 to 9999."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must fall within years 1 to 9999 once converted to UTC") from None


#: An instant given as RFC 3339 text with a zone (`2025-01-31T12:00:00Z`), read as UTC.
Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_in_utc)]


def _whole(value: object) -> object:
    """A JSON number without a fractional part (`60.0`) as the integer it is: JSON Schema's
    `integer` is such a number, however it is written."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: Last in `Annotated[StrictInt, Field(...), WHOLE]` (after the bounds, so that they are
#: published as `minimum`/`maximum`): an integer as JSON Schema means it, `60` or `60.0`,
#: never a boolean, a string or `60.5`.
WHOLE = BeforeValidator(_whole)


def _no_nul(value: str) -> str:
    """Refused with a 400: an SMS has no use for U+0000, and PostgreSQL's text columns (and
    its parameters) cannot hold it, where SQLite would store it."""
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (U+0000)")
    return value


#: What the published schema says of text without U+0000 (ECMA 262 and Python read it alike).
NUL_FREE_PATTERN = "^[^\\x00]*$"


@dataclass(frozen=True, slots=True)
class _NoNul(AfterValidator):
    """`_no_nul` after the other checks, published as `NUL_FREE_PATTERN`: the refusal is in
    the OpenAPI document (a client, or a fuzzer, reads that such a text is not valid), while
    the check and its words stay `_no_nul`'s rather than a pattern's."""

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        published = handler(schema)
        published["pattern"] = NUL_FREE_PATTERN
        return published


#: Text without U+0000 (`_no_nul`), put after the text's `Field` (`Annotated[str, Field(...),
#: NO_NUL]`): a length given after the validator is checked after validation, and its error
#: then says "Value should have at least 1 item after validation" instead of the usual words.
NO_NUL = _NoNul(_no_nul)


class TextMessage(BaseModel):
    text: Annotated[
        str, Field(min_length=1, max_length=MAX_TEXT, description="Message text."), NO_NUL
    ]


#: Standard base64 with its padding, as `binascii.a2b_base64(strict_mode=True)` reads it.
BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


class DataMessage(BaseModel):
    data: Annotated[
        str,
        Field(
            min_length=4,
            max_length=MAX_TEXT,
            pattern=BASE64,
            description="Payload, standard padded base64.",
        ),
    ]
    port: Annotated[StrictInt, Field(ge=1, le=65535, description="Destination port."), WHOLE]

    @field_validator("data")
    @classmethod
    def _is_base64(cls, value: str) -> str:
        try:
            binascii.a2b_base64(value, strict_mode=True)
        except binascii.Error:
            raise ValueError("must be standard base64 with padding") from None
        return value


def _given(name: str) -> dict[str, Any]:
    """JSON Schema for: `name` is present and not null (null counts as absent here)."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


#: A ttl that sets an expiry: present, not null and not 0 (upstream's "not set").
_TTL_SET: dict[str, Any] = {
    "required": ["ttl"],
    "properties": {"ttl": {"not": {"anyOf": [{"type": "null"}, {"const": 0}]}}},
}
#: The rules across fields JSON Schema can state: exactly one content, not both expiries.
ACROSS_FIELDS: dict[str, Any] = {
    "oneOf": [_given("textMessage"), _given("dataMessage"), _given("message")],
    "not": {"allOf": [_TTL_SET, _given("validUntil")]},
}
PHONE_NUMBER = (
    "A phone number: international (`+` and the country code, as E.164) or, when the server "
    "sets `SMSGW_DEFAULT_REGION`, national. It must be a valid mobile number unless "
    "`skipPhoneValidation` or `isEncrypted` is true."
)


class SendMessageRequest(BaseModel):
    """Body of `POST /messages`. Exactly one of textMessage, dataMessage or message; at most
    one of ttl and validUntil. Times must be in the future, and scheduleAt not after the
    message's expiry. A deviceId must be one of your phones.

    Numbers and booleans are strict, as JSON types are in the upstream server: `"priority":
    false` or `"withDeliveryReport": 1` is refused rather than guessed at (an integer may be
    written `5.0`: it is the same JSON Schema integer).
    """

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "phoneNumbers": ["+12025550100"],
                    "textMessage": {"text": "Hello from API"},
                    "withDeliveryReport": True,
                }
            ],
            **ACROSS_FIELDS,
        },
    )

    id: Annotated[
        ClientId | None,
        Field(
            description="Your own id for the message (a URL path segment: letters, digits "
            "and - . _ ~ ! $ & ' ( ) * + , ; = : @, not . or ..); sending it twice answers 409."
        ),
    ] = None
    deviceId: Annotated[
        Annotated[str, Field(min_length=1, max_length=32), NO_NUL] | None,
        Field(description="Send only from this phone (yours)."),
    ] = None
    textMessage: TextMessage | None = Field(
        None, description="An SMS with this text (long text goes as a multipart SMS)."
    )
    dataMessage: DataMessage | None = Field(
        None, description="A binary (data) SMS to this port instead of a text."
    )
    message: Annotated[
        Annotated[str, Field(min_length=1, max_length=MAX_TEXT), NO_NUL] | None,
        Field(
            description="Deprecated plain text; use textMessage.",
            json_schema_extra={"deprecated": True},
        ),
    ] = None
    phoneNumbers: Annotated[
        list[
            Annotated[
                str,
                Field(
                    min_length=1,
                    max_length=128,
                    description=PHONE_NUMBER,
                    json_schema_extra={"format": "phone"},
                ),
                NO_NUL,
            ]
        ],
        Field(
            min_length=1,
            max_length=100,
            description="Recipients, 1 to 100, each once (also once normalised).",
            json_schema_extra={"uniqueItems": True},
        ),
    ]
    isEncrypted: StrictBool = Field(
        False,
        description="The text and numbers are encrypted end to end with the phone's passphrase "
        "(smsgw stores and passes them on as they are).",
    )
    simNumber: Annotated[StrictInt, Field(ge=1, le=3), WHOLE] | None = Field(
        None, description="SIM slot, 1 to 3 (the phone's choice when unset)."
    )
    withDeliveryReport: StrictBool = Field(
        True, description="Ask the network for delivery reports, so recipients reach Delivered."
    )
    priority: Annotated[
        StrictInt,
        Field(ge=-128, le=127, description="Higher first; 100 and up skip phone limits."),
        WHOLE,
    ] = 0
    ttl: Annotated[StrictInt, Field(ge=0, le=10 * 365 * 86400), WHOLE] | None = Field(
        None, description="Seconds the message stays valid; 0 means not set, as upstream."
    )
    validUntil: Annotated[
        Instant | None,
        Field(description="Fail the message if not sent by then (RFC 3339, in the future)."),
    ] = None
    scheduleAt: Annotated[
        Instant | None,
        Field(
            description="Do not send before this time (RFC 3339, in the future, not after the "
            "expiry that validUntil or ttl sets)."
        ),
    ] = None
    mmsMessage: Annotated[
        dict[str, Any] | None,
        WithJsonSchema(
            {"type": "null", "description": "Not supported: MMS is refused (leave it out)."}
        ),
    ] = None

    @model_validator(mode="after")
    def _one_content_and_one_expiry(self) -> SendMessageRequest:
        if self.mmsMessage is not None:
            raise ValueError("mmsMessage is not supported by this server; send SMS only")
        given = [
            name
            for name in ("textMessage", "dataMessage", "message")
            if getattr(self, name) is not None
        ]
        if not given:
            raise ValueError("must specify exactly one of textMessage, dataMessage or message")
        if len(given) > 1:
            raise ValueError(f"conflicting fields {' and '.join(given)}: give exactly one")
        if self.ttl == 0:  # upstream's "not set"
            self.ttl = None
        if self.ttl is not None and self.validUntil is not None:
            raise ValueError("conflicting fields ttl and validUntil: give at most one")
        return self


class RecipientState(BaseModel):
    phoneNumber: str
    state: ProcessingState
    error: str | None = Field(description="Why this recipient failed; null when it did not.")


class HashedMessage(BaseModel):
    hash: str


class MessageState(BaseModel):
    """The full state of a message. Content keys are present only when the content is."""

    id: str
    deviceId: str | None = Field(description="The phone that has the message; null while queued.")
    state: ProcessingState
    isHashed: bool
    isEncrypted: bool
    recipients: list[RecipientState]
    states: dict[str, Timestamp] = Field(description="When the message reached each state.")
    createdAt: Timestamp
    simNumber: int | None = None
    withDeliveryReport: bool
    priority: int
    validUntil: Timestamp | None = None
    scheduleAt: Timestamp | None = None
    textMessage: TextMessage | None = None
    dataMessage: DataMessage | None = None
    hashedMessage: HashedMessage | None = None
    partsCount: int | None = Field(
        default=None,
        description="How many SMS parts the text is sent as (GSM 7-bit: 160 in one part, 153 "
        "per part of a longer text; UCS-2, when a character is not in the GSM alphabet: 70, "
        "then 67); absent for a data message or a text smsgw no longer holds. An extension "
        "of the upstream API.",
    )


class ErrorBody(BaseModel):
    """Every error answer: a human-readable message saying what is wrong."""

    message: str
