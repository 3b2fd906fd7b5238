"""The tokens table: one row per issued JWT (access or refresh), for revocation and rotation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from smsgw.db.base import Base, UTCDateTime


class Token(Base):
    """An issued token, by its `jti`. The token itself is never stored; a refresh token's
    SHA-256 is, so that only the exact token issued can be exchanged."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_use: Mapped[str] = mapped_column(String(8))
    parent_jti: Mapped[str | None] = mapped_column(String(32), index=True)
    token_hash: Mapped[str | None] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
