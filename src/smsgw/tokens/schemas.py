"""Bodies of the token routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from smsgw.messages.schemas import WHOLE
from smsgw.tokens.scopes import KNOWN, MAX_SCOPES


class TokenRequest(BaseModel):
    """`POST /auth/token`: the scopes wanted and, optionally, a shorter lifetime."""

    model_config = ConfigDict(extra="ignore")

    scopes: Annotated[
        list[Annotated[StrictStr, Field(json_schema_extra={"enum": sorted(KNOWN)})]],
        Field(
            min_length=1,
            max_length=MAX_SCOPES,
            description="Scopes of the access token (see docs/auth.md); repeats count once.",
        ),
    ]
    ttl: Annotated[StrictInt, Field(ge=0, le=10**9), WHOLE] | None = Field(
        None, description="Lifetime in seconds; capped at the configured one (0: that one)."
    )


class TokenResponse(BaseModel):
    """A new pair, in both spellings: upstream's snake_case and the Python client's camelCase."""

    id: str
    token_type: str = "Bearer"  # noqa: S105 (a scheme name, not a secret)
    access_token: str
    refresh_token: str
    expires_at: datetime
    tokenType: str = "Bearer"
    accessToken: str
    refreshToken: str
    expiresAt: datetime
