"""Wire shapes of the phone's message pull and state reports, and of the routing rule."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
)

from smsgw.domain.clock import format_timestamp, now, parse_timestamp
from smsgw.domain.states import ProcessingState
from smsgw.messages.schemas import WHOLE, DataMessage, TextMessage, Timestamp
from smsgw.optouts.service import OPTED_OUT
from smsgw.routing.rules import MAX_FAILOVER_SECONDS, MAX_PREFIXES
from smsgw.routing.service import Pulled


def _lenient(value: object) -> datetime:
    """A timestamp as text, read leniently (as phones write them); never a number."""
    if not isinstance(value, str):
        raise ValueError("must be a timestamp as text, such as 2025-01-31T12:00:00Z")
    return parse_timestamp(value)


PhoneTimestamp = Annotated[datetime, BeforeValidator(_lenient)]


class MobileMessage(BaseModel):
    """A message as a phone receives it in `GET /message`."""

    id: str
    message: str | None = Field(None, description="Plain text again, for app versions < 1.39.1.")
    textMessage: TextMessage | None = None
    dataMessage: DataMessage | None = None
    phoneNumbers: list[str]
    isEncrypted: bool | None = None
    simNumber: int | None = None
    withDeliveryReport: bool
    priority: int | None = None
    ttl: int | None = None
    validUntil: Timestamp | None = None
    scheduleAt: Timestamp | None = None
    state: ProcessingState
    createdAt: Timestamp


def to_mobile(pulled: Pulled) -> dict[str, Any]:
    """Wire form for the app: optional keys left out, timestamps with 3 fractional digits."""
    record = pulled.record
    body: dict[str, Any] = {
        "id": record.id,
        # A recipient on the opt-out list when the message was accepted is never sent to.
        "phoneNumbers": [r.phone_number for r in record.recipients if r.error != OPTED_OUT],
        "withDeliveryReport": record.with_delivery_report,
        "state": pulled.state.value,
        "createdAt": format_timestamp(record.created_at),
    }
    if record.text is not None:
        body["message"] = record.text
        body["textMessage"] = {"text": record.text}
    if record.data is not None:
        body["dataMessage"] = {"data": record.data, "port": record.port}
    if record.is_encrypted:
        body["isEncrypted"] = True
    if record.sim_number is not None:
        body["simNumber"] = record.sim_number
    if record.priority:
        body["priority"] = record.priority
    if record.valid_until is not None:
        body["validUntil"] = format_timestamp(record.valid_until)
        body["ttl"] = max(0, int((record.valid_until - now()).total_seconds()))
    if record.schedule_at is not None:
        body["scheduleAt"] = format_timestamp(record.schedule_at)
    return body


class RecipientReportIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    phoneNumber: Annotated[str, Field(min_length=1, max_length=512)]
    state: ProcessingState
    error: Annotated[str | None, Field(max_length=4096)] = None


class StateReportIn(BaseModel):
    """One message snapshot in `PATCH /message`."""

    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, Field(min_length=1, max_length=36)]
    state: ProcessingState
    recipients: Annotated[list[RecipientReportIn], Field(min_length=1, max_length=100)]
    states: dict[ProcessingState, PhoneTimestamp] = Field(default_factory=dict)


#: A number prefix of a routing rule: `+` and 1 to 15 digits.
RoutePrefix = Annotated[str, StringConstraints(pattern=r"^\+[0-9]{1,15}$"), Field(examples=["+44"])]


class RoutingRuleIn(BaseModel):
    """`PUT /links/routing`: the account's routing rule between its phones and its links.
    Mode `prefix` needs at least one prefix and the other modes take none; mode `shared`
    takes no `failoverAfter` but 0."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["shared", "phones", "links", "prefix", "fallback"] = Field(
        description="`shared` (any sender, whoever claims first: the default), `phones`, "
        "`links`, `prefix` (links for messages whose recipients all start with one of "
        "`prefixes`, phones for the rest) or `fallback` (links only while no phone is online).",
        examples=["prefix"],  # with the other fields' examples, one valid rule
    )
    prefixes: list[RoutePrefix] = Field(
        default_factory=list,
        max_length=MAX_PREFIXES,
        description="Mode `prefix` only, and required there: `+` and 1 to 15 digits each.",
        examples=[["+44", "+49"]],
    )
    failoverAfter: Annotated[StrictInt, Field(ge=0, le=MAX_FAILOVER_SECONDS), WHOLE] = Field(
        default=0,
        description="Seconds (0: never): a message still queued this long after it was due "
        "may be taken by the other kind of sender too. Only 0 in mode `shared`.",
        examples=[30],
    )


class RoutingRuleView(BaseModel):
    """The account's routing rule (docs/links.md, "Routing rules")."""

    mode: str
    prefixes: list[str]
    failoverAfter: int
