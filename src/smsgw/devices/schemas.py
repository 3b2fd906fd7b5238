"""Wire shapes of phone registration and of the devices API."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from smsgw.messages.schemas import WHOLE, Timestamp


class SimCard(BaseModel):
    """A SIM as the app reports it (numbers and ids redacted to their last 4 characters)."""

    model_config = ConfigDict(extra="ignore")

    slotIndex: Annotated[StrictInt, Field(ge=0, le=15), WHOLE]
    simNumber: Annotated[StrictInt, Field(ge=1, le=16), WHOLE]
    phoneNumber: Annotated[str | None, Field(max_length=64)] = None
    carrierName: Annotated[str | None, Field(max_length=128)] = None
    iccid: Annotated[str | None, Field(max_length=64)] = None


class PhoneReport(BaseModel):
    """What a phone tells about itself when it registers or starts."""

    model_config = ConfigDict(extra="ignore")

    pushToken: Annotated[
        str | None,
        Field(max_length=256, description="The app's push token (smsgw does not push: unused)."),
    ] = None
    simCards: Annotated[
        list[SimCard] | None, Field(max_length=16, description="The phone's SIM cards.")
    ] = None


class RegisterRequest(PhoneReport):
    name: Annotated[
        str | None, Field(max_length=128, description="The phone's name, e.g. Google/oriole.")
    ] = None


class RegisterResponse(BaseModel):
    id: str
    token: str
    login: str
    password: str | None = Field(None, description="Only when a new account was created.")


class UpdateRequest(PhoneReport):
    id: Annotated[str, Field(min_length=1, max_length=32, description="This phone's id.")]


class DeviceInfo(BaseModel):
    id: str
    name: str
    createdAt: Timestamp
    updatedAt: Timestamp
    lastSeen: Timestamp
    simCards: list[SimCard] | None = None
    appVersion: str | None = Field(
        None,
        description="The version of SMS Gateway for Android the phone last named in its "
        "User-Agent (absent until it made such a request).",
    )


class DeviceView(DeviceInfo):
    """A phone as the 3rd-party API lists it."""

    connected: bool = Field(description="Whether the phone holds an event stream open now.")
    virtual: bool = Field(
        False,
        description="smsgw's extension: a virtual phone, which lives inside smsgw for "
        "development and sends no real SMS (docs/phones.md).",
    )
    budget: BudgetView | None = Field(
        None,
        description="smsgw's extension: the SMS parts the phone may be handed per minute "
        "and per day, and how many it was handed (docs/routing.md#budgets).",
    )


PartsPerMinute = Annotated[StrictInt, Field(ge=0, le=1_000_000), WHOLE]
PartsPerDay = Annotated[StrictInt, Field(ge=0, le=100_000_000), WHOLE]


class OwnBudget(BaseModel):
    """A phone's own limits; null: the server's default (SMSGW_PHONE_PARTS_PER_MINUTE,
    SMSGW_PHONE_PARTS_PER_DAY); 0: no limit."""

    model_config = ConfigDict(extra="forbid")

    perMinute: PartsPerMinute | None = Field(
        None, description="SMS parts per minute (0 to 1,000,000; 0: no limit)."
    )
    perDay: PartsPerDay | None = Field(
        None, description="SMS parts per UTC day (0 to 100,000,000; 0: no limit)."
    )


class DeviceChange(BaseModel):
    """`PATCH /devices/{id}`: smsgw's extension. A key of `budget` left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    budget: OwnBudget


class BudgetView(BaseModel):
    """How close a phone is to its budget (docs/routing.md#budgets)."""

    perMinute: int = Field(description="The limit in force, SMS parts per minute (0: none).")
    perDay: int = Field(description="The limit in force, SMS parts per UTC day (0: none).")
    usedThisMinute: int = Field(description="Parts handed to the phone this UTC minute.")
    usedToday: int = Field(description="Parts handed to the phone this UTC day.")
    own: OwnBudget = Field(description="The phone's own limits (null: the server's default).")


class DeviceSelf(BaseModel):
    externalIp: str
    device: DeviceInfo | None = None


class PasswordChange(BaseModel):
    currentPassword: Annotated[
        str, Field(min_length=1, max_length=128, description="The account's password now.")
    ]
    newPassword: Annotated[
        str, Field(min_length=14, max_length=128, description="The new one, 14 to 128 characters.")
    ]


class UserCode(BaseModel):
    code: str
    validUntil: Timestamp


def without_none(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Leave optional keys out instead of sending null (the app's JSON reader wants that)."""
    return {k: v for k, v in data.items() if not (k in keys and v is None)}
