"""Bodies of the API key routes (camelCase, as smsgw's own routes)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from smsgw.apikeys.repository import KeyRow
from smsgw.apikeys.service import MAX_NAME, NAME_PATTERN, State, state_of
from smsgw.messages.schemas import Instant, Timestamp
from smsgw.tokens.scopes import KNOWN, MAX_SCOPES


class KeyRequest(BaseModel):
    """`POST /auth/keys`: a name, the key's scopes and, optionally, when it expires."""

    model_config = ConfigDict(extra="ignore")

    name: Annotated[
        StrictStr,
        Field(
            min_length=1,
            max_length=MAX_NAME,
            pattern=NAME_PATTERN,
            description="What the key is for, unique among your keys not revoked.",
        ),
    ]
    scopes: Annotated[
        list[Annotated[StrictStr, Field(json_schema_extra={"enum": sorted(KNOWN)})]],
        Field(
            min_length=1,
            max_length=MAX_SCOPES,
            description="Scopes of the key (see docs/auth.md); repeats count once.",
        ),
    ]
    expiresAt: Annotated[
        Instant | None,
        Field(description="When the key stops working (RFC 3339, in the future); none: never."),
    ] = None


class KeyInfo(BaseModel):
    """A key as listed: never the key itself."""

    id: str = Field(description="The key's public id (the part after `smsgw_`).")
    name: str
    scopes: list[str]
    state: State
    createdAt: Timestamp
    expiresAt: Timestamp | None
    lastUsedAt: Timestamp | None = Field(
        description="Its last use, to the minute (written at most once a minute)."
    )
    revokedAt: Timestamp | None


class CreatedKey(KeyInfo):
    """A new key, with the key itself: shown this once, never again."""

    key: str = Field(description="The key, for `Authorization: Bearer`; shown only once.")


def key_info(row: KeyRow, now: datetime) -> KeyInfo:
    return KeyInfo(
        id=row.public_id,
        name=row.name,
        scopes=row.scopes,
        state=state_of(row, now),
        createdAt=row.created_at,
        expiresAt=row.expires_at,
        lastUsedAt=row.last_used_at,
        revokedAt=row.revoked_at,
    )
