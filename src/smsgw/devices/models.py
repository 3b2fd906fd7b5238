"""The devices table: one row per registered phone."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from smsgw.db.base import Base, UTCDateTime


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (Index(None, "user_id", "last_seen"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    push_token: Mapped[str | None] = mapped_column(String(256))
    sim_cards: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    #: The app version of the last request whose User-Agent named one (devices/appversion.py).
    app_version: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    #: A phone that lives inside smsgw, for development (virtualphones/): never a real SMS.
    virtual: Mapped[bool] = mapped_column(Boolean, server_default=false())
    #: The phone's own budget, SMS parts per minute and per UTC day (routing/budgets.py):
    #: None follows the server's default, 0 is no limit.
    parts_per_minute: Mapped[int | None] = mapped_column(Integer)
    parts_per_day: Mapped[int | None] = mapped_column(Integer)
