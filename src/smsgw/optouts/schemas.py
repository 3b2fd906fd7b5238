"""Bodies of the opt-outs API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from smsgw.messages.schemas import Timestamp
from smsgw.optouts.repository import OptOutRecord


class OptOutIn(BaseModel):
    """`POST /opt-outs`: a number to stop sending to."""

    model_config = ConfigDict(extra="ignore")

    phoneNumber: str = Field(
        min_length=1,
        max_length=128,
        description="Read as `POST /messages` reads a recipient: international (`+` and the "
        "country code, as E.164) or, when the server sets `SMSGW_DEFAULT_REGION`, national; "
        "a valid mobile number.",
        examples=["+12025550100"],
        json_schema_extra={"format": "phone"},
    )


class OptOutView(BaseModel):
    """A number on the opt-out list: messages to it fail with "recipient opted out"."""

    phoneNumber: str = Field(description="In E.164 when it reads as a phone number.")
    source: Literal["sms", "api", "dashboard"] = Field(
        description="`sms`: the recipient texted a stop word; `api`, `dashboard`: added there."
    )
    createdAt: Timestamp


def view(record: OptOutRecord) -> dict[str, str]:
    shown = OptOutView(
        phoneNumber=record.phone_number,
        source=record.source,
        createdAt=record.created_at,
    )
    return shown.model_dump(mode="json")
