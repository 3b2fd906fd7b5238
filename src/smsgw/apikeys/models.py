"""The api_keys table: one row per named key; the key's secret itself is never stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, column
from sqlalchemy.orm import Mapped, mapped_column

from smsgw.db.base import Base, UTCDateTime

_LIVE = column("revoked_at").is_(None)


class ApiKey(Base):
    """A named key of `user_id`. `public_id` is the part of the key that finds its row (it
    is not secret); `secret_hash` is the SHA-256 of the secret part (apikeys/service.py).
    A name is unique among the account's keys not revoked (a revoked key's name is free)."""

    __tablename__ = "api_keys"
    __table_args__ = (
        Index(None, "user_id", "name", unique=True, sqlite_where=_LIVE, postgresql_where=_LIVE),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
