"""Bodies of the webhooks API, as the upstream server spells them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from smsgw.messages.schemas import Timestamp
from smsgw.webhooks.events import EVENTS


class WebhookIn(BaseModel):
    """`POST /webhooks`: `id` optional (generated when empty), upsert on (owner, id)."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(
        default=None,
        max_length=36,
        description="Your id for the webhook; registering the same id again replaces it.",
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
    )
    event: str = Field(
        description="The event, e.g. sms:received (docs/webhooks.md lists them all).",
        examples=["sms:received"],
    )

    @field_validator("event")
    @classmethod
    def _event_is_known(cls, value: str) -> str:
        if value not in EVENTS:
            raise ValueError(f"unknown event {value!r}; use one of: {', '.join(EVENTS)}")
        return value


class WebhookView(BaseModel):
    id: str
    deviceId: str | None
    url: str
    event: str
    enabled: bool = True
    disabledReason: str | None = None


class AttemptView(BaseModel):
    """One delivery attempt: `finishedAt` is null while it runs (or if smsgw stopped)."""

    eventId: str
    event: str
    startedAt: Timestamp
    finishedAt: Timestamp | None
    statusCode: int | None
    durationMs: int | None
    error: str | None


class SigningKeyView(BaseModel):
    signingKey: str
