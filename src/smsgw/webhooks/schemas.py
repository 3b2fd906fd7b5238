"""Bodies of the webhooks API, as the upstream server spells them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from smsgw.domain import ids
from smsgw.messages.schemas import Timestamp
from smsgw.webhooks.events import EVENTS

#: A webhook's own id is a path segment (`DELETE /webhooks/{id}`), as a message's; empty:
#: one is generated.
ID_SCHEMA: dict[str, Any] = {"pattern": f"^$|{ids.CLIENT_ID_PATTERN}"}


class WebhookIn(BaseModel):
    """`POST /webhooks`: `id` optional (generated when empty), upsert on (owner, id)."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(
        default=None,
        max_length=36,
        description="Your id for the webhook; registering the same id again replaces it.",
        json_schema_extra=ID_SCHEMA,
    )
    deviceId: str | None = Field(
        default=None, max_length=32, description="Only events of this phone (all phones if unset)."
    )
    url: str = Field(
        min_length=1,
        max_length=256,
        description="Where events are posted: https:// on a public host, unless the operator set "
        "SMSGW_WEBHOOKS_ALLOW_PRIVATE_URLS.",
        examples=["https://example.com/sms-hook"],
        json_schema_extra={"pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^ \t\n]+$"},
    )
    event: str = Field(
        description="The event, e.g. sms:received (docs/webhooks.md lists them all).",
        examples=["sms:received"],
        json_schema_extra={"enum": list(EVENTS)},
    )

    @field_validator("event")
    @classmethod
    def _event_is_known(cls, value: str) -> str:
        if value not in EVENTS:
            raise ValueError(f"unknown event {value!r}; use one of: {', '.join(EVENTS)}")
        return value

    @field_validator("id")
    @classmethod
    def _id_is_a_path_segment(cls, value: str | None) -> str | None:
        return ids.check_client_id(value) if value else value


class WebhookView(BaseModel):
    id: str
    deviceId: str | None
    url: str
    event: str = Field(json_schema_extra={"enum": list(EVENTS)})
    enabled: bool = True
    disabledReason: str | None = None


class AttemptView(BaseModel):
    """One delivery attempt: `finishedAt` is null while it runs (or if smsgw was killed)."""

    eventId: str
    event: str = Field(json_schema_extra={"enum": list(EVENTS)})
    startedAt: Timestamp
    finishedAt: Timestamp | None
    statusCode: int | None
    durationMs: int | None
    error: str | None


class SigningKeyView(BaseModel):
    signingKey: str
